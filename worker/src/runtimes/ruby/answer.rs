//! What the Ruby prelude's `invoke` returns, read: a byte string of records that
//! `Array#pack` writes in one call each, so that the prelude does no JSON work
//! of its own for an answer (a `JSON.generate` of the answer cost the
//! interpreted VM ~105,000 instructions a call). Lengths are little-endian; the status
//! travels as text because `pack` would wrap an Integer too large for its field.
//!
//! ```text
//! answer = record*
//! record = "S" u32 n status[n]                     the status in decimal (the last one counts)
//!        | "H" u32 n u32 m name[n] value[m]        a header, in order
//!        | "B" u32 n body[n]                       the handler ended the response with this body
//!        | "T" u32 n text[n]                       the handler returned this String
//!        | "J" u32 n json[n]                       the handler returned this value, as JSON
//!        | "E" u32 n message[n] u32 m trace[m]     the handler raised
//! ```
//!
//! The answer went through user code (a handler can reach the response's
//! buffer), so it is read as untrusted: every length is checked against what
//! is left, exactly one of `B`, `T`, `J` or `E` must be there, and anything
//! else is an error saying what is wrong, never a guess. Text that is not
//! UTF-8 has its invalid bytes replaced.

use super::super::script::{ResponseEnvelope, ScriptOutcome};

/// Reads an answer.
///
/// # Errors
/// What is wrong with it, when it is not what the prelude writes.
pub fn outcome(bytes: &[u8]) -> Result<ScriptOutcome, String> {
    let mut r = Reader(bytes);
    let mut status = None;
    let mut headers = Vec::new();
    let mut ending: Option<Ending> = None;
    while let Some(tag) = r.byte() {
        let next = match tag {
            b'S' => {
                let text = r.counted()?;
                let n = text.parse::<u16>().map_err(|_| format!("status {text} is not from 0 to 65535"))?;
                status = Some(n);
                continue;
            }
            b'H' => {
                let (n, m) = (r.length()?, r.length()?);
                let name = r.text(n).ok_or("a header record is cut short")?;
                let value = r.text(m).ok_or("a header record is cut short")?;
                headers.push((name, value));
                continue;
            }
            b'B' => Ending::Body(r.counted()?),
            b'T' => Ending::Text(r.counted()?),
            b'J' => Ending::Json(r.counted()?),
            b'E' => Ending::Raised(r.counted()?, r.counted()?),
            other => return Err(format!("unknown record {other:#04x}")),
        };
        if ending.replace(next).is_some() {
            return Err("more than one ending".into());
        }
    }
    let Some(ending) = ending else {
        return Err("neither a response nor an error".into());
    };
    let mut envelope =
        ResponseEnvelope { ended: false, status, headers, body: None, value_text: None, is_string: false };
    match ending {
        Ending::Raised(message, trace) => {
            return Ok(ScriptOutcome { error: Some(message), trace: Some(trace), ..ScriptOutcome::default() });
        }
        Ending::Body(body) => (envelope.ended, envelope.body) = (true, Some(body)),
        Ending::Text(text) => (envelope.value_text, envelope.is_string) = (Some(text), true),
        Ending::Json(json) => envelope.value_text = Some(json),
    }
    Ok(ScriptOutcome { response: Some(envelope), ..ScriptOutcome::default() })
}

enum Ending {
    Body(String),
    Text(String),
    Json(String),
    Raised(String, String),
}

struct Reader<'a>(&'a [u8]);

impl Reader<'_> {
    fn byte(&mut self) -> Option<u8> {
        let (&first, rest) = self.0.split_first()?;
        self.0 = rest;
        Some(first)
    }

    fn array<const N: usize>(&mut self) -> Option<[u8; N]> {
        let (head, rest) = self.0.split_first_chunk::<N>()?;
        self.0 = rest;
        Some(*head)
    }

    fn length(&mut self) -> Result<usize, String> {
        let n = u32::from_le_bytes(self.array().ok_or("a length is cut short")?);
        usize::try_from(n).map_err(|_| "a length does not fit".to_string())
    }

    fn text(&mut self, n: usize) -> Option<String> {
        let (head, rest) = self.0.split_at_checked(n)?;
        self.0 = rest;
        Some(String::from_utf8_lossy(head).into_owned())
    }

    /// A u32 length and that many bytes, as text.
    fn counted(&mut self) -> Result<String, String> {
        let n = self.length()?;
        self.text(n).ok_or_else(|| format!("a record of {n} bytes is cut short"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(tag: u8, parts: &[&[u8]]) -> Vec<u8> {
        let mut out = vec![tag];
        for p in parts {
            out.extend_from_slice(&u32::try_from(p.len()).expect("small").to_le_bytes());
            out.extend_from_slice(p);
        }
        out
    }

    fn status(n: i128) -> Vec<u8> {
        record(b'S', &[n.to_string().as_bytes()])
    }

    #[test]
    fn an_ended_response_with_its_status_and_headers() {
        let mut answer = vec![b'H'];
        answer.extend_from_slice(&3u32.to_le_bytes());
        answer.extend_from_slice(&1u32.to_le_bytes());
        answer.extend_from_slice(b"X-ab");
        answer.extend(status(201));
        answer.extend(record(b'B', &[b"hi \xff"]));
        let out = outcome(&answer).expect("well formed");
        let env = out.response.expect("a response");
        assert!(env.ended);
        assert_eq!(env.status, Some(201));
        assert_eq!(env.headers, vec![("X-a".to_string(), "b".to_string())]);
        assert_eq!(env.body.as_deref(), Some("hi \u{fffd}"), "invalid UTF-8 is replaced");
    }

    #[test]
    fn returned_values_and_errors() {
        let env = outcome(&[status(200), record(b'T', &[b"text"])].concat()).expect("ok").response.expect("res");
        assert_eq!((env.value_text.as_deref(), env.is_string, env.ended), (Some("text"), true, false));
        let env = outcome(&[status(200), record(b'J', &[b"{}"])].concat()).expect("ok").response.expect("res");
        assert_eq!((env.value_text.as_deref(), env.is_string), (Some("{}"), false));
        let out = outcome(&record(b'E', &[b"RuntimeError: no", b"trace"])).expect("ok");
        assert_eq!((out.error.as_deref(), out.trace.as_deref()), (Some("RuntimeError: no"), Some("trace")));
        assert!(out.response.is_none());
    }

    #[test]
    fn anything_else_is_an_error_that_says_what() {
        let cases: Vec<(Vec<u8>, &str)> = vec![
            (vec![], "neither"),
            (status(200), "neither"),
            (status(70_000), "not from 0 to 65535"),
            (status(-1), "not from 0 to 65535"),
            (status(1 << 70), "status 1180591620717411303424 is not from 0 to 65535"),
            (record(b'S', &[b"abc"]), "status abc is not from 0 to 65535"),
            (vec![b'S', 1, 2], "cut short"),
            (vec![b'S', 9, 0, 0, 0, b'2'], "cut short"),
            (record(b'B', &[b"x"])[..3].to_vec(), "cut short"),
            ([&record(b'B', &[b"abc"])[..5], b"ab"].concat(), "cut short"),
            ([record(b'B', &[b"a"]), record(b'T', &[b"b"])].concat(), "more than one ending"),
            ([record(b'B', &[b"a"]), vec![b'Z']].concat(), "unknown record"),
            (vec![b'H', 0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0], "cut short"),
        ];
        for (answer, want) in cases {
            let err = outcome(&answer).err().unwrap_or_else(|| panic!("{answer:?} was accepted"));
            assert!(err.contains(want), "{answer:?}: {err}");
        }
    }
}
