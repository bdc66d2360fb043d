//! What the attack tests share: a bystander function whose answers an attack
//! must not change, and small bundle and answer helpers.

use serde_json::{Value, json};

use super::{Server, zip};

/// A function that answers `{"bystander":true}`: the one whose answers an attack
/// must not change.
pub fn bystander_bundle() -> Vec<u8> {
    let handler = "function handler(ctx) { return { bystander: true, n: ctx.request().getParam(\"n\") }; }\nhandler\n";
    script_bundle("js", "handler.js", handler)
}

pub fn script_bundle(language: &str, entry: &str, source: &str) -> Vec<u8> {
    let metadata = format!(r#"{{"language":"{language}","entrypointFile":"{entry}","timeoutMs":5000}}"#);
    zip(&[("metadata.json", metadata.as_bytes()), (entry, source.as_bytes())])
}

pub fn code(body: &[u8]) -> Option<String> {
    serde_json::from_slice::<Value>(body).ok().and_then(|v| v["code"].as_str().map(str::to_string))
}

pub fn assert_bystander_answers(server: &Server, n: u32) {
    let r = server.get(&format!("/fn/bystander?n={n}"));
    assert_eq!(r.status, 200, "bystander: {}", r.text());
    assert_eq!(r.json(), json!({"bystander": true, "n": n.to_string()}));
}
