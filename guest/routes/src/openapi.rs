//! The server describes itself, as the original FastAPI server did:
//! `/openapi.json` (OpenAPI 3.1) and `/docs` (a self-contained HTML page that
//! renders it, with no external scripts or styles).

use serde_json::{Value, json};

/// The OpenAPI 3.1 document of the replica's API.
pub fn document() -> Value {
    let error = json!({ "$ref": "#/components/schemas/Error" });
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "Replica server",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "A replica behind a load balancer: /home says which replica answered, \
                            /heartbeat says it is alive.",
        },
        "paths": {
            "/home": {
                "get": {
                    "operationId": "home",
                    "summary": "Which replica answered",
                    "responses": {
                        "200": {
                            "description": "The replica's greeting, naming its SERVER_ID.",
                            "content": { "application/json": { "schema": { "$ref": "#/components/schemas/Home" } } },
                        },
                        "500": {
                            "description": "The replica was started without a SERVER_ID.",
                            "content": { "application/json": { "schema": error } },
                        },
                    },
                },
            },
            "/heartbeat": {
                "get": {
                    "operationId": "heartbeat",
                    "summary": "Liveness for the load balancer's health check (HEAD works too)",
                    "responses": {
                        "200": { "description": "Alive. The body is empty." },
                    },
                },
            },
        },
        "components": {
            "schemas": {
                "Home": {
                    "type": "object",
                    "required": ["message", "status"],
                    "properties": {
                        "message": { "type": "string", "examples": ["Hello from Server: 1"] },
                        "status": { "type": "string", "const": "successful" },
                    },
                },
                "Error": {
                    "type": "object",
                    "required": ["detail"],
                    "properties": { "detail": { "type": "string" } },
                },
            },
        },
    })
}

/// The `/docs` page: it fetches `/openapi.json` and lists the operations.
pub const DOCS_HTML: &str = include_str!("docs.html");

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn documents_both_routes_with_their_responses() {
        let doc = document();
        assert_eq!(doc["openapi"], "3.1.0");
        assert!(doc["paths"]["/home"]["get"]["responses"]["200"].is_object());
        assert!(doc["paths"]["/heartbeat"]["get"]["responses"]["200"].is_object());
        assert_eq!(
            doc["components"]["schemas"]["Home"]["properties"]["status"]["const"],
            "successful"
        );
    }

    #[test]
    fn the_docs_page_is_self_contained() {
        assert!(DOCS_HTML.contains("/openapi.json"));
        assert!(!DOCS_HTML.contains("<script src"));
        assert!(!DOCS_HTML.contains("<link"));
        assert!(!DOCS_HTML.contains("http://") && !DOCS_HTML.contains("https://"));
    }
}
