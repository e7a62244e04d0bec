//! The files users deploy with, checked by the tools of their own ecosystems:
//! the Dockerfiles by hadolint, the Kubernetes manifest against Kubernetes'
//! schemas (kubernetes-validate, strict), the compose file by Compose itself.
//! Each tool is also shown to refuse a broken file, so that a pass means
//! something.

mod common;

use common::docker::text;
use common::needs::{Test, Tool};
use common::workspace;
use std::path::Path;
use std::process::{Command, Output};

fn main() -> std::process::ExitCode {
    common::needs::main(vec![
        Test {
            name: "the_dockerfiles_pass_hadolint",
            needs: &[],
            run: the_dockerfiles_pass_hadolint,
        },
        Test {
            name: "the_kubernetes_manifest_is_valid_and_made_for_zero_downtime",
            needs: &[],
            run: the_kubernetes_manifest_is_valid_and_made_for_zero_downtime,
        },
        Test {
            name: "the_compose_file_is_valid",
            needs: &[Tool::Compose],
            run: the_compose_file_is_valid,
        },
    ])
}

/// A tool `make test` installs into `.venv` from PyPI.
fn venv_tool(name: &str, args: &[&str]) -> Output {
    let tool = workspace().join(".venv/bin").join(name);
    Command::new(&tool)
        .args(args)
        .current_dir(workspace())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e} (run `make test`)", tool.display()))
}

fn scratch(name: &str, contents: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("replica-deploy-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let path = dir.join(name);
    std::fs::write(&path, contents).expect("write");
    path
}

fn the_dockerfiles_pass_hadolint() {
    for file in [
        "Dockerfile",
        "deploy/haproxy/Dockerfile",
        "deploy/redis/Dockerfile",
        "deploy/collector/Dockerfile",
        "deploy/viewer/Dockerfile",
    ] {
        let out = venv_tool("hadolint", &[file]);
        assert!(out.status.success(), "hadolint {file}: {}", text(&out));
    }
    let bad = scratch("Dockerfile", "FROM debian\nRUN apt-get install curl\n");
    let out = venv_tool("hadolint", &[bad.to_str().expect("utf-8")]);
    assert!(
        !out.status.success(),
        "hadolint passed a bad Dockerfile: {}",
        text(&out)
    );
}

fn validate(manifest: &Path, version: &str) -> Output {
    venv_tool(
        "kubernetes-validate",
        &["--strict", "-k", version, manifest.to_str().expect("utf-8")],
    )
}

fn the_kubernetes_manifest_is_valid_and_made_for_zero_downtime() {
    let manifest = workspace().join("deploy/kubernetes/replicas.yaml");
    // 1.30: the oldest release with the preStop sleep action on by default.
    for version in ["1.30.0", "1.37.0"] {
        let out = validate(&manifest, version);
        assert!(out.status.success(), "against {version}: {}", text(&out));
    }
    let text_of = std::fs::read_to_string(&manifest).expect("read");
    for part in [
        "maxUnavailable: 0",
        "kind: PodDisruptionBudget",
        "kind: HorizontalPodAutoscaler",
        "topologySpreadConstraints",
        "preStop",
        "sleep: { seconds: 5 }",
    ] {
        assert!(text_of.contains(part), "the manifest lacks {part:?}");
    }
    let broken = scratch(
        "broken.yaml",
        &text_of.replace("maxUnavailable: 0", "maxUnavailabel: 0"),
    );
    assert!(
        !validate(&broken, "1.37.0").status.success(),
        "the validator passed a misspelt field"
    );
}

fn the_compose_file_is_valid() {
    let compose = common::needs::compose().expect("Compose is here (checked by the harness)");
    let config_of = |files: &[&str]| {
        let mut cmd = Command::new(compose[0]);
        cmd.args(&compose[1..]);
        for file in files {
            cmd.args(["-f", file]);
        }
        cmd.args(["config", "-q"])
            .current_dir(workspace())
            .output()
            .expect("Compose runs")
    };
    let config = |file: &str| config_of(&[file]);
    let out = config("compose.yaml");
    assert!(out.status.success(), "{}", text(&out));
    // The Redis overlay, on top of it.
    let out = config_of(&["compose.yaml", "compose.redis.yaml"]);
    assert!(out.status.success(), "{}", text(&out));
    // The traces' collector and viewer, on top of it.
    let out = config_of(&["compose.yaml", "compose.traces.yaml", "compose.viewer.yaml"]);
    assert!(out.status.success(), "{}", text(&out));
    let broken = scratch(
        "compose.yaml",
        &std::fs::read_to_string(workspace().join("compose.yaml"))
            .expect("read")
            .replace("restart: unless-stopped", "restart: [unless-stopped]"),
    );
    assert!(
        !config(broken.to_str().expect("utf-8")).status.success(),
        "Compose passed a broken file"
    );
}
