//! The original project's module shape: a `cdylib` exporting `handler` and no
//! `_start`. Reads `{"name": ...}` from stdin, prints `{"name_twice": "<name> <name>"}`
//! and what it saw of the request.

use std::io::{Read, Write};

#[unsafe(no_mangle)]
pub extern "C" fn handler() {
    let mut body = String::new();
    std::io::stdin().read_to_string(&mut body).expect("stdin");
    let input: serde_json::Value = serde_json::from_str(&body).unwrap_or(serde_json::Value::Null);
    let name = input.get("name").and_then(|n| n.as_str()).unwrap_or("nobody");
    let var = |k: &str| std::env::var(k).unwrap_or_default();
    let out = serde_json::json!({
        "name_twice": format!("{name} {name}"),
        "method": var("REQUEST_METHOD"),
        "path": var("PATH_INFO"),
        "query": var("QUERY_STRING"),
        "greeting": var("HTTP_X_GREETING"),
    });
    print!("{out}");
    // A library's `handler` returns without the exit-time flush a command gets.
    std::io::stdout().flush().expect("stdout");
}
