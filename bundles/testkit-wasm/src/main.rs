//! A guest for the test suite: one small module whose behaviour is chosen by the
//! request body, `{"action": ..., ...}`, so every limit and failure can be driven
//! over HTTP both ways (obeyed and violated).
//!
//! Actions: `echo` (default), `env` (list the environment it sees), `log` (write
//! `text` to stderr), `panic`, `exit` (with `code`), `sleep` (`ms`), `spin`
//! (busy loop forever), `alloc` (`mb` megabytes), `recurse` (until the stack
//! runs out), `print` (`bytes` bytes of output), `headers` (CGI status + header).

use std::io::{Read, Write};

fn main() {
    let mut body = String::new();
    std::io::stdin().read_to_string(&mut body).expect("stdin");
    let input: serde_json::Value = serde_json::from_str(&body).unwrap_or(serde_json::Value::Null);
    let num = |k: &str| input.get(k).and_then(|v| v.as_u64()).unwrap_or(0);
    match input.get("action").and_then(|a| a.as_str()).unwrap_or("echo") {
        "env" => {
            let env: serde_json::Map<String, serde_json::Value> =
                std::env::vars().map(|(k, v)| (k, serde_json::Value::String(v))).collect();
            print!("{}", serde_json::Value::Object(env));
        }
        "log" => {
            eprintln!("{}", input.get("text").and_then(|t| t.as_str()).unwrap_or(""));
            print!("{{\"logged\":true}}");
        }
        "panic" => panic!("testkit was asked to panic"),
        "exit" => std::process::exit(num("code") as i32),
        "sleep" => {
            std::thread::sleep(std::time::Duration::from_millis(num("ms")));
            print!("{{\"slept\":{}}}", num("ms"));
        }
        "spin" => {
            let mut x: u64 = 0;
            loop {
                x = std::hint::black_box(x.wrapping_add(1));
            }
        }
        "alloc" => {
            let mut blocks = Vec::new();
            for _ in 0..num("mb") {
                blocks.push(vec![1u8; 1 << 20]);
            }
            print!("{{\"allocated_mb\":{}}}", blocks.len());
        }
        "recurse" => print!("{}", recurse(std::hint::black_box(1))),
        "print" => {
            let chunk = vec![b'x'; 64 * 1024];
            let mut left = num("bytes") as usize;
            let mut out = std::io::stdout();
            while left > 0 {
                let n = left.min(chunk.len());
                out.write_all(&chunk[..n]).expect("stdout");
                left -= n;
            }
        }
        "headers" => print!("Status: 201\nContent-Type: text/plain\nX-Testkit: yes\n\ncreated"),
        _ => print!("{input}"),
    }
}

#[allow(unconditional_recursion)] // the point: recurse until the stack runs out
fn recurse(n: u64) -> u64 {
    let pad = std::hint::black_box([n; 64]);
    recurse(pad[7] + 1) + pad[3]
}
