//! What the Ruby prelude reads on stdin for one invocation: the request's head
//! as one line of JSON (`function`, `method`, `path`, `rawQuery` and script.rs's
//! maps: `query`, `headers`, `headerList`), a newline (compact JSON has none of
//! its own), then the body's exact bytes.
//!
//! The head is serialized straight from the request, without building a
//! `serde_json::Value` first: that tree (and dropping it) was most of what the
//! host spent on a Ruby invocation outside the VM.

use std::borrow::Cow;
use std::collections::HashSet;

use polyfaas_protocol::HttpRequest;
use serde::Serialize;
use serde::ser::{SerializeMap, Serializer};

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Head<'a> {
    function: &'a str,
    method: &'a str,
    path: &'a str,
    raw_query: &'a str,
    query: FirstWins<'a>,
    headers: FirstWins<'a>,
    header_list: &'a [(Cow<'a, str>, Cow<'a, str>)],
}

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
    let head = Head {
        function,
        method: &request.method,
        path: &request.path,
        raw_query: &request.query,
        query: FirstWins(&query),
        headers: FirstWins(&header_list),
        header_list: &header_list,
    };
    let mut input = Vec::with_capacity(256 + request.body.len());
    serde_json::to_writer(&mut input, &head)?;
    input.push(b'\n');
    input.extend_from_slice(&request.body);
    Ok(input)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtimes::script::request_parts;

    #[test]
    fn the_head_is_script_rs_maps_and_the_scalars_then_the_body() {
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
        let cut = input.iter().position(|b| *b == b'\n').expect("a newline");
        assert_eq!(&input[cut + 1..], &request.body[..], "the body's exact bytes");
        let head: serde_json::Value = serde_json::from_slice(&input[..cut]).expect("one line of JSON");
        let mut want = request_parts(&request);
        if let serde_json::Value::Object(m) = &mut want {
            m.insert("function".into(), "fn".into());
            m.insert("method".into(), "POST".into());
            m.insert("path".into(), "/p".into());
            m.insert("rawQuery".into(), request.query.clone().into());
        }
        assert_eq!(head, want);
    }
}
