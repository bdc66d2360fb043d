//! The client's side of HTTP: one agent that carries the token (when there is
//! one) on every request, and answers read whole (capped), whatever their status.
//! It never prints and never decides what a status means to the user.

use std::io::Read;

use anyhow::{Result, bail};

/// The largest answer read: far above any page of logs or list of functions.
const MAX_ANSWER: u64 = 64 << 20;

pub struct Agent {
    inner: ureq::Agent,
    base: String,
    token: Option<String>,
}

/// An HTTP answer: its status and body.
pub struct Answer {
    pub status: u16,
    pub body: Vec<u8>,
}

impl Answer {
    pub fn ok(&self) -> bool {
        (200..300).contains(&self.status)
    }

    /// The body as JSON, or an error saying what came instead.
    pub fn json(&self) -> Result<serde_json::Value> {
        match serde_json::from_slice(&self.body) {
            Ok(value) => Ok(value),
            Err(e) => bail!("the server answered {} with a body that is not JSON ({e})", self.status),
        }
    }

    /// The server's `{"error", "code"}`, as one line for a person.
    pub fn error_line(&self) -> String {
        match self.json() {
            Ok(v) if v["error"].is_string() => format!(
                "{} ({}, HTTP {})",
                v["error"].as_str().unwrap_or_default(),
                v["code"].as_str().unwrap_or("error"),
                self.status
            ),
            _ => format!("the server answered HTTP {}: {}", self.status, String::from_utf8_lossy(&self.body).trim()),
        }
    }
}

impl Agent {
    pub fn new(base: &str, token: Option<String>) -> Self {
        Self { inner: ureq::AgentBuilder::new().build(), base: base.trim_end_matches('/').to_string(), token }
    }

    pub fn base(&self) -> &str {
        &self.base
    }

    /// A request to `path` (under the base URL), with the token if there is one.
    pub fn request(&self, method: &str, path: &str) -> ureq::Request {
        let request = self.inner.request(method, &format!("{}{path}", self.base));
        match &self.token {
            Some(token) => request.set("authorization", &format!("Bearer {token}")),
            None => request,
        }
    }

    pub fn has_token(&self) -> bool {
        self.token.is_some()
    }

    pub fn get(&self, path: &str) -> Result<Answer> {
        read(self.request("GET", path).call())
    }
}

/// Any HTTP status is an answer; only a transport failure is an error.
pub fn read(result: Result<ureq::Response, ureq::Error>) -> Result<Answer> {
    let response = match result {
        Ok(r) | Err(ureq::Error::Status(_, r)) => r,
        Err(e) => bail!("cannot reach the server: {e}"),
    };
    let status = response.status();
    let mut body = Vec::new();
    response.into_reader().take(MAX_ANSWER).read_to_end(&mut body)?;
    Ok(Answer { status, body })
}
