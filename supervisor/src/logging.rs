//! The server's own log (stderr): the subscriber, and the rule that makes it
//! trustworthy — one event is one line, so nothing a handler or a worker says can
//! start a line that looks like the server's.
//!
//! Text that comes from user code (worker stderr, handler logs, failure messages)
//! is escaped where it is logged ([`escape`]). Behind that, every event goes
//! through [`OneLine`], which escapes any line break or control character inside
//! an event: a path that forgets to escape still cannot forge a line.

use std::io::Write;

use crate::config::LogFormat;

/// Logs go to stderr: plain lines by default (what journald expects), or one JSON
/// object per line for log shippers. `RUST_LOG` filters.
pub fn init(format: LogFormat) {
    use std::io::IsTerminal;
    let ansi = format == LogFormat::Plain && std::io::stderr().is_terminal();
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder =
        tracing_subscriber::fmt().with_env_filter(filter).with_writer(OneLineStderr { ansi }).with_target(false);
    match format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Plain => builder.with_ansi(ansi).init(),
    }
}

/// Text from user code, made safe to put inside a log line: line breaks, control
/// characters (ANSI escapes among them), Unicode line separators and bidi controls
/// become visible escapes (`\n`, `\u{1b}`), and a backslash is doubled so an
/// escape cannot be faked. Invalid UTF-8 is replaced.
pub fn escape(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(bytes);
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c.is_control()
                || matches!(c, '\u{2028}' | '\u{2029}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}') =>
            {
                out.push_str(&format!("\\u{{{:x}}}", c as u32));
            }
            c => out.push(c),
        }
    }
    out
}

/// `text` cut to at most `max` bytes on a character boundary, and how many bytes
/// were cut.
pub fn cut(text: &str, max: usize) -> (&str, usize) {
    if text.len() <= max {
        return (text, 0);
    }
    let at = (0..=max).rev().find(|i| text.is_char_boundary(*i)).unwrap_or(0);
    (&text[..at], text.len() - at)
}

/// The subscriber's writer: one [`OneLine`] per event.
struct OneLineStderr {
    /// Whether the formatter colours its output (a terminal): its own ESC bytes
    /// then pass; user text was escaped before it reached the formatter.
    ansi: bool,
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for OneLineStderr {
    type Writer = OneLine;

    fn make_writer(&'a self) -> OneLine {
        OneLine { ansi: self.ansi }
    }
}

/// Writes one formatted event to stderr as exactly one line. tracing-subscriber's
/// fmt layer hands a writer the whole event in one `write_all`.
struct OneLine {
    ansi: bool,
}

impl OneLine {
    fn sanitize(&self, buf: &[u8]) -> Vec<u8> {
        let (body, newline) = match buf.strip_suffix(b"\n") {
            Some(body) => (body, true),
            None => (buf, false),
        };
        let mut out = Vec::with_capacity(buf.len() + 8);
        for &b in body {
            match b {
                b'\n' => out.extend_from_slice(b"\\n"),
                b'\r' => out.extend_from_slice(b"\\r"),
                b'\t' => out.push(b),
                0x1b if self.ansi => out.push(b),
                b if b < 0x20 || b == 0x7f => out.extend_from_slice(format!("\\x{b:02x}").as_bytes()),
                b => out.push(b),
            }
        }
        if newline {
            out.push(b'\n');
        }
        out
    }
}

impl Write for OneLine {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        std::io::stderr().lock().write_all(&self.sanitize(buf))?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stderr().flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaped_text_has_no_line_break_or_control_character() {
        let forged = "ok\n2026-12-01T00:00:00Z  INFO invoked status=200\r\x1b[2K\u{2028}\u{202e}\\n";
        let out = escape(forged.as_bytes());
        assert!(!out.chars().any(|c| c.is_control()), "{out}");
        assert_eq!(out, "ok\\n2026-12-01T00:00:00Z  INFO invoked status=200\\r\\u{1b}[2K\\u{2028}\\u{202e}\\\\n");
        assert_eq!(escape(&[0xff, b'a']), "\u{fffd}a");
    }

    #[test]
    fn one_event_stays_one_line() {
        let plain = OneLine { ansi: false };
        assert_eq!(plain.sanitize(b"a\nb\r\x1b[1mc\n"), b"a\\nb\\r\\x1b[1mc\n");
        assert_eq!(plain.sanitize(b"no newline"), b"no newline");
        let ansi = OneLine { ansi: true };
        assert_eq!(ansi.sanitize(b"\x1b[32mINFO\x1b[0m x\ny\n"), b"\x1b[32mINFO\x1b[0m x\\ny\n");
    }

    #[test]
    fn cut_is_on_a_char_boundary() {
        assert_eq!(cut("héllo", 2), ("h", 5));
        assert_eq!(cut("abc", 5), ("abc", 0));
    }
}
