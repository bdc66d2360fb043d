//! What the Ruby prelude reads on stdin for one invocation: four lines of JSON
//! (compact JSON has no newline of its own), then the body's exact bytes:
//!
//! ```text
//! ["<function>", "<method>", "<path>", "<rawQuery>"]
//! {query: first value of each name, percent-decoded}
//! {headers: first value of each lower-cased name}
//! [[name, value], …]   every header in arrival order (headerList)
//! <body>
//! ```
//!
//! The prelude parses a line only when the handler first reads from it:
//! `JSON.parse` is dear in the interpreted VM (~200,000 instructions for a whole
//! head), so `getHeader` should not pay for the query, nor `path` for the
//! headers. The lines are serialized straight from the request, without
//! building a `serde_json::Value` first: that tree (and dropping it) was most of
//! what the host spent on a Ruby invocation outside the VM.

use std::borrow::Cow;
use std::collections::HashSet;

use polyfaas_protocol::HttpRequest;
use serde::Serialize;
use serde::ser::{SerializeMap, Serializer};

/// Pairs as a JSON object in which the first value of a repeated name wins (as
/// script.rs's maps do).
struct FirstWins<'a>(&'a [(Cow<'a, str>, Cow<'a, str>)]);

impl Serialize for FirstWins<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut seen = HashSet::with_capacity(self.0.len());
        let mut map = serializer.serialize_map(None)?;
        for (k, v) in self.0 {
            if seen.insert(k.as_ref()) {
                map.serialize_entry(k, v)?;
            }
        }
        map.end()
    }
}

/// The stdin of one invocation.
///
/// # Errors
/// Only if serializing strings fails, which serde_json does not do.
pub fn request_input(function: &str, request: &HttpRequest) -> serde_json::Result<Vec<u8>> {
    let query: Vec<_> = form_urlencoded::parse(request.query.as_bytes()).collect();
    let header_list: Vec<_> =
        request.headers.iter().map(|(k, v)| (Cow::Owned(k.to_ascii_lowercase()), Cow::Borrowed(v.as_str()))).collect();
    let mut input = Vec::with_capacity(256 + request.body.len());
    line(&mut input, &[function, request.method.as_str(), request.path.as_str(), request.query.as_str()])?;
    line(&mut input, &FirstWins(&query))?;
    line(&mut input, &FirstWins(&header_list))?;
    line(&mut input, &header_list)?;
    input.extend_from_slice(&request.body);
    Ok(input)
}

fn line(out: &mut Vec<u8>, value: &impl Serialize) -> serde_json::Result<()> {
    serde_json::to_writer(&mut *out, value)?;
    out.push(b'\n');
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtimes::script::request_parts;

    #[test]
    fn four_lines_of_script_rs_maps_and_scalars_then_the_body() {
        let request = HttpRequest {
            method: "POST".into(),
            path: "/p".into(),
            query: "a=1&b=x%20y&a=2&%E2%9C%93=%22q%22".into(),
            headers: vec![
                ("X-Test".into(), "v\n1".into()),
                ("x-test".into(), "v2".into()),
                ("Host".into(), "h".into()),
            ],
            body: vec![b'{', b'\n', 0xff, 0],
        };
        let input = request_input("fn", &request).expect("serializable");
        let mut parts = input.splitn(5, |b| *b == b'\n');
        let mut next = || -> serde_json::Value {
            serde_json::from_slice(parts.next().expect("a line")).expect("one line of JSON")
        };
        let want = request_parts(&request);
        assert_eq!(next(), serde_json::json!(["fn", "POST", "/p", request.query]));
        assert_eq!(next(), want["query"]);
        assert_eq!(next(), want["headers"]);
        assert_eq!(next(), want["headerList"]);
        assert_eq!(parts.next(), Some(&request.body[..]), "the body's exact bytes");
    }
}
