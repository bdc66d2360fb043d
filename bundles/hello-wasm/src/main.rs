//! A WASI command module (`_start`): reads the request body as JSON from stdin and
//! answers with a greeting plus what it saw of the request (WAGI variables).

use std::io::Read;

fn main() {
    let mut body = String::new();
    std::io::stdin().read_to_string(&mut body).expect("stdin");
    let input: serde_json::Value = serde_json::from_str(&body).unwrap_or(serde_json::Value::Null);
    let name = input.get("name").and_then(|n| n.as_str()).unwrap_or("world");
    let var = |k: &str| std::env::var(k).unwrap_or_default();
    let out = serde_json::json!({
        "hello": name,
        "input": input,
        "method": var("REQUEST_METHOD"),
        "path": var("PATH_INFO"),
        "query": var("QUERY_STRING"),
        "greeting": var("HTTP_X_GREETING"),
    });
    print!("{out}");
}
