//! WAGI/CGI conventions: the request as environment variables, and the module's
//! stdout as the response (optionally led by CGI headers, unless the function
//! turned that off with `"cgi": false`).

use polyfaas_protocol::{HttpRequest, HttpResponse, WasmOptions};

use super::environ::Environ;

/// Adds the CGI variables a module sees for `request` to `env` (after the function's own).
pub fn request_env(function: &str, request: &HttpRequest, env: &mut Environ) {
    env.push("REQUEST_METHOD", &request.method);
    env.push("PATH_INFO", &request.path);
    env.push("QUERY_STRING", &request.query);
    env.push_display("SCRIPT_NAME", format_args!("/fn/{function}"));
    env.push_display("CONTENT_LENGTH", request.body.len());
    env.push("GATEWAY_INTERFACE", "CGI/1.1");
    env.push("SERVER_PROTOCOL", "HTTP/1.1");
    for (name, value) in &request.headers {
        if name == "content-type" {
            env.push("CONTENT_TYPE", value);
        }
        env.push_header(name, value);
    }
}

/// Turns what a module printed into a response. Output that starts with a CGI
/// header block (`Name: value` lines, then a blank line) sets the status
/// (`Status: 201`) and headers; anything else is the body of a 200. Without
/// `options.cgi`, all of stdout is the body. The `content-type` is the one the
/// headers set, else `options.content_type`.
pub fn parse_output(stdout: Vec<u8>, options: &WasmOptions) -> HttpResponse {
    let cgi = if options.cgi { split_cgi_headers(&stdout) } else { None };
    match cgi {
        Some((headers, body_start)) => {
            let mut status = 200;
            let mut out = Vec::new();
            for (name, value) in headers {
                if name.eq_ignore_ascii_case("status") {
                    status = value.split_whitespace().next().and_then(|s| s.parse().ok()).unwrap_or(200);
                } else {
                    out.push((name.to_ascii_lowercase(), value.to_string()));
                }
            }
            if !out.iter().any(|(n, _)| n == "content-type") {
                out.push(("content-type".into(), options.content_type.clone()));
            }
            HttpResponse { status, headers: out, body: stdout[body_start..].to_vec() }
        }
        None => HttpResponse {
            status: 200,
            headers: vec![("content-type".into(), options.content_type.clone())],
            body: stdout,
        },
    }
}

/// Finds a leading CGI header block. Returns the headers and where the body starts.
fn split_cgi_headers(out: &[u8]) -> Option<(Vec<(&str, &str)>, usize)> {
    // Headers are short; don't scan a large body looking for them.
    let head = &out[..out.len().min(16 * 1024)];
    let text = std::str::from_utf8(head).ok().or_else(|| {
        let end = head.windows(2).position(|w| w == b"\n\n")? + 2;
        std::str::from_utf8(&head[..end]).ok()
    })?;
    let mut headers = Vec::new();
    let mut pos = 0;
    for line in text.split_inclusive('\n') {
        pos += line.len();
        let line = line.trim_end_matches(['\n', '\r']);
        if line.is_empty() {
            return if headers.is_empty() { None } else { Some((headers, pos)) };
        }
        let (name, value) = line.split_once(':')?;
        let valid_name = !name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
        if !valid_name {
            return None;
        }
        headers.push((name, value.trim()));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_output(stdout: Vec<u8>) -> HttpResponse {
        super::parse_output(stdout, &WasmOptions::default())
    }

    #[test]
    fn without_cgi_stdout_is_the_body_whatever_it_starts_with() {
        let options = WasmOptions { args: vec![], content_type: "text/plain".into(), cgi: false };
        let out = b"Total: 5\n\nitems: 3\n".to_vec();
        let r = super::parse_output(out.clone(), &options);
        assert_eq!((r.status, r.body), (200, out.clone()));
        assert_eq!(r.headers, vec![("content-type".to_string(), "text/plain".to_string())]);
        // The default (cgi on) takes that first line for a header.
        assert_eq!(parse_output(out).body, b"items: 3\n");
    }

    #[test]
    fn content_type_is_the_default_when_the_headers_set_none() {
        let options = WasmOptions { args: vec![], content_type: "text/html".into(), cgi: true };
        let r = super::parse_output(b"X-A: b\n\n<p>".to_vec(), &options);
        assert!(r.headers.contains(&("content-type".into(), "text/html".into())));
        let r = super::parse_output(b"Content-Type: text/plain\n\nhi".to_vec(), &options);
        assert_eq!(r.headers, vec![("content-type".to_string(), "text/plain".to_string())]);
    }

    #[test]
    fn plain_output_is_a_json_200() {
        let r = parse_output(br#"{"a":1}"#.to_vec());
        assert_eq!((r.status, r.body.as_slice()), (200, &br#"{"a":1}"#[..]));
        assert_eq!(r.headers, vec![("content-type".to_string(), "application/json".to_string())]);
    }

    #[test]
    fn cgi_headers_set_status_and_headers() {
        let r = parse_output(b"Content-Type: text/plain\r\nStatus: 201 Created\r\nX-A: b\r\n\r\nhello".to_vec());
        assert_eq!(r.status, 201);
        assert_eq!(r.body, b"hello");
        assert!(r.headers.contains(&("x-a".into(), "b".into())));
        assert!(r.headers.contains(&("content-type".into(), "text/plain".into())));
    }

    #[test]
    fn text_with_a_colon_but_no_blank_line_is_body() {
        let r = parse_output(b"note: this is not a header".to_vec());
        assert_eq!(r.body, b"note: this is not a header");
        let r = parse_output(b"a sentence: with spaces\n\nmore".to_vec());
        assert_eq!(r.status, 200);
        assert_eq!(r.body, b"a sentence: with spaces\n\nmore");
    }

    #[test]
    fn headers_become_cgi_variables() {
        let req = HttpRequest {
            method: "GET".into(),
            path: "/x".into(),
            query: "a=1".into(),
            headers: vec![("x-my-header".into(), "v".into())],
            body: vec![],
        };
        let mut env = Environ::default();
        request_env("f", &req, &mut env);
        let env = env.vars();
        assert!(env.contains(&("HTTP_X_MY_HEADER".into(), "v".into())));
        assert!(env.contains(&("QUERY_STRING".into(), "a=1".into())));
        assert!(env.contains(&("SCRIPT_NAME".into(), "/fn/f".into())));
        assert!(env.contains(&("CONTENT_LENGTH".into(), "0".into())));
    }
}
