//! The guest describes itself like the original FastAPI server: an OpenAPI 3.1
//! document checked by a real validator, and a /docs page that a real browser
//! renders from it.

mod common;

use common::needs::{Test, Tool};
use common::{Server, get, replica_guest, workspace};
use std::process::Command;

fn main() -> std::process::ExitCode {
    common::needs::main(vec![
        Test {
            name: "openapi_json_is_a_valid_openapi_3_1_document",
            needs: &[],
            run: openapi_json_is_a_valid_openapi_3_1_document,
        },
        Test {
            name: "the_docs_page_renders_the_api_in_a_headless_browser",
            needs: &[Tool::Chromium],
            run: the_docs_page_renders_the_api_in_a_headless_browser,
        },
    ])
}

fn openapi_json_is_a_valid_openapi_3_1_document() {
    let server = Server::start(&replica_guest(), &[], &[("SERVER_ID", "1")]);
    let reply = get(&server.url("/openapi.json"));
    assert_eq!(reply.status, 200);
    assert_eq!(reply.header("content-type"), Some("application/json"));
    let doc = reply.json();
    assert_eq!(doc["openapi"], "3.1.0");
    assert!(
        doc["paths"]["/home"]["get"].is_object() && doc["paths"]["/heartbeat"]["get"].is_object()
    );

    let file = std::env::temp_dir().join(format!("replica-openapi-{}.json", std::process::id()));
    std::fs::write(&file, &reply.body).expect("write");
    // openapi-spec-validator, from PyPI, installed into .venv by `make test`.
    let validator = workspace().join(".venv/bin/openapi-spec-validator");
    let out = Command::new(&validator)
        .arg(&file)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e} (run `make test`)", validator.display()));
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "the validator rejected the document: {said}"
    );
    assert!(said.contains("OK"), "{said}");
    let _ = std::fs::remove_file(&file);
}

fn the_docs_page_renders_the_api_in_a_headless_browser() {
    let browser = common::needs::chromium().expect("Chromium is here (checked by the harness)");
    let server = Server::start(&replica_guest(), &[], &[("SERVER_ID", "1")]);
    let page = get(&server.url("/docs"));
    assert_eq!(
        page.header("content-type"),
        Some("text/html; charset=utf-8")
    );
    assert!(!page.body.contains("<script src") && !page.body.contains("https://"));

    let profile = std::env::temp_dir().join(format!("replica-chromium-{}", std::process::id()));
    let out = Command::new(browser)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        // Lets the page's fetch of /openapi.json finish before the DOM is dumped.
        .args(["--virtual-time-budget=10000", "--dump-dom"])
        .arg(server.url("/docs"))
        .output()
        .expect("chromium runs");
    let dom = String::from_utf8_lossy(&out.stdout);
    let _ = std::fs::remove_dir_all(&profile);
    // Rows the page's script built from the served OpenAPI document.
    assert!(
        dom.contains(r#"<td class="method">GET</td><td class="path">/home</td>"#),
        "{dom}"
    );
    assert!(dom.contains(r#"<td class="path">/heartbeat</td>"#), "{dom}");
    assert!(dom.contains("OpenAPI 3.1.0"), "{dom}");
    assert!(dom.contains("Replica server 0.1.0"), "{dom}");
}
