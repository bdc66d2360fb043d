//! A guest for the test suite: one small module whose behaviour is chosen by the
//! request body, `{"action": ..., ...}`, so every limit and failure can be driven
//! over HTTP both ways (obeyed and violated).
//!
//! Actions: `echo` (default), `env` (list the environment it sees), `log` (write
//! `text` to stderr), `panic`, `exit` (with `code`), `sleep` (`ms`), `spin`
//! (busy loop forever), `alloc` (`mb` megabytes), `recurse` (until the stack
//! runs out), `print` (`bytes` bytes of output), `flood` (`bytes` of logs),
//! `headers` (CGI status + header), `raw` (print `text` as it is: CGI headers and
//! body of the test's choosing), `environRaw` / `environAt` (the raw WASI
//! environment calls), and the hostile ones of tests/tests/hostile.rs.

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
        "flood" => {
            // To the logs (stderr), `bytes` of it, as fast as it goes.
            let line = [b'x'; 64 * 1024];
            let mut err = std::io::stderr();
            for _ in 0..(num("bytes") as usize / line.len()) {
                if err.write_all(&line).is_err() {
                    break;
                }
            }
            print!("{{\"flooded\":true}}");
        }
        "headers" => print!("Status: 201\nContent-Type: text/plain\nX-Testkit: yes\n\ncreated"),
        "raw" => print!("{}", input.get("text").and_then(|t| t.as_str()).unwrap_or("")),
        // Hostile actions for tests/tests/hostile.rs. WASI preview 1 has no process,
        // socket or signal calls at all, and no directory is preopened.
        "readFile" => {
            attempt(std::fs::read(input["path"].as_str().unwrap_or("/etc/passwd")).map(|b| b.len().to_string()))
        }
        "writeFile" => {
            attempt(std::fs::write(input["path"].as_str().unwrap_or("/tmp/x"), b"pwned").map(|()| "written".into()))
        }
        "connect" => {
            attempt(std::net::TcpStream::connect(("127.0.0.1", num("port") as u16)).map(|_| "connected".into()))
        }
        // The environment through the raw WASI calls: with the guest's own
        // buffers (`environRaw`: what they hand over), or at pointers of the
        // test's choosing (`environAt`: bad ones must trap).
        "environRaw" => print!("{}", serde_json::Value::from(environ_raw())),
        "environAt" => {
            let at = |k: &str| input.get(k).and_then(|v| v.as_u64()).unwrap_or(0) as u32;
            // SAFETY: WASI checks the pointers against this module's memory (that is
            // what the test asks of it); nothing here reads what it wrote.
            let errno = unsafe {
                if input.get("count").is_some() {
                    raw::environ_sizes_get(at("count"), at("size"))
                } else {
                    raw::environ_get(at("pointers"), at("buf"))
                }
            };
            print!("{{\"errno\":{errno}}}");
        }
        "fork" | "spawn" | "killParent" => {
            print!("{}", serde_json::json!({"ok": false, "error": "WASI preview 1 offers no such call"}))
        }
        _ => print!("{input}"),
    }
}

/// The raw WASI preview 1 environment calls, under names of their own.
mod raw {
    #[link(wasm_import_module = "wasi_snapshot_preview1")]
    unsafe extern "C" {
        #[link_name = "environ_sizes_get"]
        pub fn environ_sizes_get(count: u32, size: u32) -> i32;
        #[link_name = "environ_get"]
        pub fn environ_get(pointers: u32, buf: u32) -> i32;
    }
}

/// The environment as `environ_get` hands it over, each `NAME=value` read at the
/// pointer the host wrote for it.
fn environ_raw() -> Vec<String> {
    let (mut count, mut size) = (0u32, 0u32);
    // SAFETY: two valid, aligned `u32`s of this module's memory.
    let errno = unsafe { raw::environ_sizes_get(&mut count as *mut u32 as u32, &mut size as *mut u32 as u32) };
    assert_eq!(errno, 0, "environ_sizes_get");
    let mut pointers = vec![0u32; count as usize];
    let mut buf = vec![0u8; size as usize];
    // SAFETY: room for `count` pointers and `size` bytes, as the host just said.
    let errno = unsafe { raw::environ_get(pointers.as_mut_ptr() as u32, buf.as_mut_ptr() as u32) };
    assert_eq!(errno, 0, "environ_get");
    let start = buf.as_ptr() as u32;
    pointers
        .iter()
        .map(|p| {
            let from = (p - start) as usize;
            let len = buf[from..].iter().position(|b| *b == 0).expect("NUL-terminated");
            String::from_utf8_lossy(&buf[from..from + len]).into_owned()
        })
        .collect()
}

/// Prints whether a hostile operation worked.
fn attempt(result: std::io::Result<String>) {
    let out = match result {
        Ok(what) => serde_json::json!({"ok": true, "result": what}),
        Err(e) => serde_json::json!({"ok": false, "error": e.to_string()}),
    };
    print!("{out}");
}

#[allow(unconditional_recursion)] // the point: recurse until the stack runs out
fn recurse(n: u64) -> u64 {
    let pad = std::hint::black_box([n; 64]);
    recurse(pad[7] + 1) + pad[3]
}
