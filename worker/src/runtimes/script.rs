//! What the three script runtimes share: the request envelope each language's
//! prelude turns into `ctx`, the response envelope it hands back, and the capped
//! log buffer behind `console.log` / `print` / `puts`.
//!
//! Envelope in: `{function, method, path, query: {k: v}, rawQuery, headers: {k: v},
//! headerList: [[k, v]], body, bodyBase64}`: `query`/`headers` are the simple maps
//! (first value wins), `rawQuery`/`headerList` what arrived (for WSGI/Rack/fetch
//! adapters), `bodyBase64` the exact bytes only when the body is not UTF-8 (else
//! null: the bytes are the UTF-8 of `body`).
//! Envelope out: `{ended, status, headers: [[k, v]], body, valueText, isString}`:
//! `ended` when a responder (`ctx.json`, `response().end`) was called, else
//! `valueText` is what the handler returned, as the body's text already.
//!
//! No JSON text passes between a prelude and its host for either: each language
//! exchanges them in its own terms, built and read by its runtime (`js/request.rs`,
//! `js/answer.rs`, `python/envelope.rs`, and for Ruby, whose VM is a WASI module,
//! the request on stdin and a packed answer, `ruby/answer.rs`).

use std::borrow::Cow;

use base64::Engine as _;
use polyfaas_protocol::{FailureKind, HttpRequest, HttpResponse, Logs, Stats};
use serde_json::{Map, Value, json};

use super::{Completed, Failure};

/// A body as the envelope's `body` (text, invalid UTF-8 replaced) and
/// `bodyBase64` (the exact bytes, only when they are not UTF-8).
pub fn body_text(body: &[u8]) -> (Cow<'_, str>, Option<String>) {
    match std::str::from_utf8(body) {
        Ok(text) => (Cow::Borrowed(text), None),
        Err(_) => (String::from_utf8_lossy(body), Some(base64::engine::general_purpose::STANDARD.encode(body))),
    }
}

/// The envelope's maps: `query`, `headers` and `headerList`.
pub fn request_parts(request: &HttpRequest) -> Value {
    let mut query = Map::new();
    for (k, v) in form_urlencoded::parse(request.query.as_bytes()) {
        query.entry(k.into_owned()).or_insert(Value::String(v.into_owned()));
    }
    let mut headers = Map::new();
    let mut header_list = Vec::with_capacity(request.headers.len());
    for (k, v) in &request.headers {
        let name = k.to_ascii_lowercase();
        header_list.push(json!([name, v]));
        headers.entry(name).or_insert(Value::String(v.clone()));
    }
    json!({ "query": query, "headers": headers, "headerList": header_list })
}

/// The prelude's answer, read off its objects (`js/answer.rs`,
/// `python/envelope.rs`) or its packed bytes (`ruby/answer.rs`).
pub struct ResponseEnvelope {
    pub ended: bool,
    pub status: Option<u16>,
    pub headers: Vec<(String, String)>,
    pub body: Option<String>,
    /// The returned value as the body already: the string itself when
    /// `is_string`, else its JSON text.
    pub value_text: Option<String>,
    pub is_string: bool,
}

/// A status as JavaScript hands its numbers over (`201.0` from `Number(n)`):
/// whole and within `u16`, else refused.
///
/// # Errors
/// The message for the caller when `n` is not such a number.
pub fn status_of(n: f64) -> Result<u16, String> {
    if n.fract() == 0.0 && (0.0..=f64::from(u16::MAX)).contains(&n) {
        Ok(n as u16)
    } else {
        Err(format!("status {n} is not a whole number from 0 to 65535"))
    }
}

/// The HTTP response an answer stands for.
pub fn response_from(env: ResponseEnvelope) -> HttpResponse {
    let mut headers: Vec<(String, String)> =
        env.headers.into_iter().map(|(k, v)| (k.to_ascii_lowercase(), v)).collect();
    let has_type = |h: &[(String, String)]| h.iter().any(|(k, _)| k == "content-type");
    if env.ended {
        let body = env.body.unwrap_or_default().into_bytes();
        if !has_type(&headers) {
            headers.push(("content-type".into(), "text/plain; charset=utf-8".into()));
        }
        return HttpResponse { status: env.status.unwrap_or(200), headers, body };
    }
    // Plain style: the returned value is the response.
    let (body, content_type) = match env.value_text {
        Some(text) if env.is_string => (text.into_bytes(), "text/plain; charset=utf-8"),
        Some(json) => (json.into_bytes(), "application/json"),
        None => (b"null".to_vec(), "application/json"),
    };
    if !has_type(&headers) {
        headers.push(("content-type".into(), content_type.into()));
    }
    HttpResponse { status: env.status.unwrap_or(200), headers, body }
}

/// The function's own environment (metadata.json `env`) as a JSON object, for a
/// prelude to install.
pub fn env_json(env: &[(String, String)]) -> String {
    let map: Map<String, Value> = env.iter().map(|(k, v)| (k.clone(), Value::String(v.clone()))).collect();
    Value::Object(map).to_string()
}

/// What a prelude's `invoke` returns (Python and Ruby): the response envelope,
/// or the error the handler raised with its trace; Python adds its captured logs.
#[derive(Default)]
pub struct ScriptOutcome {
    pub response: Option<ResponseEnvelope>,
    pub error: Option<String>,
    pub trace: Option<String>,
    pub logs: Option<String>,
    pub logs_overflow: bool,
}

impl ScriptOutcome {
    /// The invocation's result. `timed_out`: the runtime's deadline fired during
    /// the call (the handler's error is then the interruption).
    pub fn finish(self, mut logs: Logs, timed_out: bool, stats: Stats) -> Result<Completed, Failure> {
        if logs.truncated {
            return Err(Failure {
                kind: FailureKind::ResponseTooLarge,
                message: "the handler logged more than the output cap".into(),
                logs,
            });
        }
        if let Some(message) = self.error {
            logs.text.push_str(self.trace.as_deref().unwrap_or(""));
            return Err(if timed_out {
                Failure { kind: FailureKind::Timeout, message: "the handler ran past its deadline".into(), logs }
            } else {
                Failure { kind: FailureKind::HandlerError, message, logs }
            });
        }
        match self.response {
            Some(envelope) => Ok(Completed { response: response_from(envelope), logs, stats }),
            None => Err(Failure {
                kind: FailureKind::HandlerError,
                message: "malformed answer from the prelude: neither a response nor an error".into(),
                logs,
            }),
        }
    }
}

/// A handler's console output for one invocation, capped. Past the cap the rest
/// is dropped and the invocation fails with `response_too_large`.
#[derive(Debug, Default)]
pub struct LogBuffer {
    text: String,
    cap: usize,
    overflowed: bool,
}

impl LogBuffer {
    pub fn new(cap: usize) -> Self {
        Self { text: String::new(), cap, overflowed: false }
    }

    pub fn push_line(&mut self, line: &str) {
        self.push(line);
        self.push("\n");
    }

    pub fn push(&mut self, s: &str) {
        if self.overflowed {
            return;
        }
        if self.text.len() + s.len() > self.cap {
            let room = self.cap - self.text.len();
            let cut = (0..=room).rev().find(|i| s.is_char_boundary(*i)).unwrap_or(0);
            self.text.push_str(&s[..cut]);
            self.overflowed = true;
            return;
        }
        self.text.push_str(s);
    }

    pub fn overflowed(&self) -> bool {
        self.overflowed
    }

    /// Takes the text out, leaving the buffer empty for the next invocation.
    pub fn take(&mut self) -> Logs {
        let logs = Logs { text: std::mem::take(&mut self.text), truncated: self.overflowed };
        self.overflowed = false;
        logs
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn envelope(
        ended: bool,
        status: Option<u16>,
        body: Option<&str>,
        value: Option<&str>,
        is_string: bool,
    ) -> HttpResponse {
        response_from(ResponseEnvelope {
            ended,
            status,
            headers: vec![("X-A".into(), "b".into())],
            body: body.map(str::to_string),
            value_text: value.map(str::to_string),
            is_string,
        })
    }

    #[test]
    fn the_maps_decode_the_query_and_lowercase_headers() {
        let req = HttpRequest {
            method: "GET".into(),
            path: "/".into(),
            query: "a=1&b=x%20y&a=2".into(),
            headers: vec![("X-Test".into(), "v".into())],
            body: b"{}".to_vec(),
        };
        let parts = request_parts(&req);
        assert_eq!(parts["query"], json!({"a": "1", "b": "x y"}));
        assert_eq!(parts["headers"]["x-test"], "v");
        assert_eq!(parts["headerList"], json!([["x-test", "v"]]));
    }

    #[test]
    fn a_body_that_is_not_utf8_is_text_and_base64() {
        let (text, base64) = body_text(&[0xff, 0x00, b'a']);
        assert_eq!((text.as_ref(), base64.as_deref()), ("\u{fffd}\0a", Some("/wBh")));
        assert_eq!(body_text(b"ok"), (Cow::Borrowed("ok"), None));
    }

    #[test]
    fn responder_and_plain_styles() {
        let r = envelope(true, Some(201), Some("hi"), None, false);
        assert_eq!((r.status, r.body.as_slice()), (201, &b"hi"[..]));
        assert!(r.headers.contains(&("x-a".into(), "b".into())), "names are lower-cased");
        assert!(r.headers.iter().any(|(k, v)| k == "content-type" && v.starts_with("text/plain")));
        let r = envelope(false, None, None, Some("text"), true);
        assert_eq!((r.status, r.body.as_slice()), (200, &b"text"[..]));
        assert!(r.headers.iter().any(|(k, v)| k == "content-type" && v.starts_with("text/plain")));
        let r = envelope(false, None, None, Some("{\"a\":1}"), false);
        assert_eq!(r.body, br#"{"a":1}"#);
        assert!(r.headers.iter().any(|(k, v)| k == "content-type" && v == "application/json"));
        let r = envelope(false, None, None, Some("{\"a\":1}"), true);
        assert_eq!(r.body, br#"{"a":1}"#, "a string that looks like JSON is still text");
        assert!(r.headers.iter().any(|(k, v)| k == "content-type" && v.starts_with("text/plain")));
        let r = envelope(false, None, None, None, false);
        assert_eq!(r.body, b"null", "no value at all");
    }

    #[test]
    fn a_status_is_a_whole_number_in_range() {
        assert_eq!(status_of(201.0), Ok(201));
        assert!(status_of(70_000.0).is_err());
        assert!(status_of(201.5).is_err());
        assert!(status_of(-1.0).is_err());
        assert!(status_of(f64::NAN).is_err());
    }

    #[test]
    fn logs_are_capped_on_a_char_boundary() {
        let mut b = LogBuffer::new(5);
        b.push("abc");
        b.push("déf");
        assert!(b.overflowed());
        let logs = b.take();
        assert_eq!(logs.text, "abcd");
        assert!(logs.truncated);
        assert!(!b.overflowed());
    }
}
