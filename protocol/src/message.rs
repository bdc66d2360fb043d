//! The messages of the protocol. Payloads that are JSON or opaque bytes travel as
//! bytes (`serde_bytes`): postcard cannot decode `serde_json::Value`, and bytes are
//! copied once instead of being re-encoded.

use serde::{Deserialize, Serialize};

/// What the supervisor sends to a worker.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum ToWorker {
    /// Compile and check a bundle that is being uploaded, before it is stored;
    /// answered with `Prepared` or `PrepareError`. For WASM this compiles and runs
    /// no user code; for a script it is a dry run of the entrypoint's top level, so
    /// the answer is from a worker that ran user code and is trusted no further.
    /// The bundle's directory travels with this frame (see [`Prepare`]).
    Prepare(Prepare),
    /// Specialize a blank worker to one function version; answered with
    /// `InitOk` or `InitError`. Sent once in a worker's life. The bundle's
    /// directory travels with this frame (see [`Init`]).
    Init(Init),
    /// Run the function once; answered with `Response` or `Failure`.
    Invoke(Invoke),
    /// Finish the current invocation, then exit.
    Shutdown,
}

/// What a worker sends to the supervisor.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum FromWorker {
    /// Sent once, as soon as the worker runs.
    Hello {
        pid: u32,
        protocol_version: u32,
    },
    Prepared {
        artifacts: Vec<Artifact>,
    },
    PrepareError {
        message: String,
    },
    InitOk,
    InitError {
        message: String,
    },
    Response {
        id: u64,
        response: HttpResponse,
        logs: Logs,
        stats: Stats,
    },
    Failure {
        id: u64,
        kind: FailureKind,
        message: String,
        logs: Logs,
    },
}

/// The runtime a bundle is written for (`metadata.json` `language`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Language {
    Wasm,
    Js,
    Python,
    Ruby,
}

impl Language {
    /// Every language, in a fixed order.
    pub const ALL: [Language; 4] = [Language::Wasm, Language::Js, Language::Python, Language::Ruby];

    /// The language spelled `s` (as in `metadata.json` and the HTTP API).
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|l| l.as_str() == s)
    }

    /// The spelling used in `metadata.json` and the HTTP API.
    pub fn as_str(self) -> &'static str {
        match self {
            Language::Wasm => "wasm",
            Language::Js => "js",
            Language::Python => "python",
            Language::Ruby => "ruby",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
/// The unpacked (not yet stored) bundle is not named here: its directory is
/// passed with the frame as a descriptor (`SCM_RIGHTS`, opened `O_PATH`), the
/// worker's only way to it. A worker holds no path into the store.
pub struct Prepare {
    pub language: Language,
    /// Path of the entrypoint, relative to the bundle's directory.
    pub entrypoint: String,
    /// The function's own environment (`metadata.json` `env`), the same as `Init`
    /// gets: a script's dry run sees what its invocations will.
    pub env: Vec<(String, String)>,
}

/// A file the worker made while preparing a bundle (a precompiled module), for the
/// supervisor to store beside it. Workers never write to the store themselves.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Artifact {
    /// A bare file name (no directory part); the supervisor checks it.
    pub file_name: String,
    #[serde(with = "serde_bytes")]
    pub bytes: Vec<u8>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
/// The stored bundle is not named here: its directory is passed with the frame
/// as a descriptor (`SCM_RIGHTS`, opened `O_PATH`), the worker's only way to it,
/// read-only. A worker holds no path into the store.
pub struct Init {
    pub function: String,
    pub version: u64,
    pub language: Language,
    /// Path of the entrypoint, relative to the bundle's directory.
    pub entrypoint: String,
    pub limits: Limits,
    /// The function's own environment (`metadata.json` `env`), and nothing else.
    pub env: Vec<(String, String)>,
    /// How a WASI module is started and its output read (wasm bundles only).
    pub wasm: WasmOptions,
}

/// A wasm function's `metadata.json` `args`, `contentType` and `cgi`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WasmOptions {
    /// The command's arguments after its name (`argv[1..]`).
    pub args: Vec<String>,
    /// The response's `content-type` when the output sets none.
    pub content_type: String,
    /// Whether a leading CGI header block in stdout sets the status and headers;
    /// when false, stdout is the body, whatever it starts with.
    pub cgi: bool,
}

impl Default for WasmOptions {
    fn default() -> Self {
        Self { args: Vec::new(), content_type: DEFAULT_CONTENT_TYPE.to_string(), cgi: true }
    }
}

/// The `content-type` of a WASM response whose output sets none.
pub const DEFAULT_CONTENT_TYPE: &str = "application/json";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Limits {
    pub timeout_ms: u64,
    pub memory_mb: u64,
    /// Cap on the response body and on the captured logs, each.
    pub max_output_bytes: u64,
}

/// The longest message (`Failure`, `InitError`, `PrepareError`) a worker sends; it
/// cuts longer ones. The detail belongs in the logs.
pub const MAX_MESSAGE_LEN: usize = 64 * 1024;

/// The most a response's headers may add up to (names and values); a worker
/// answers a handler that sets more with `ResponseTooLarge`.
pub const MAX_HEADERS_LEN: usize = 64 * 1024;

/// What a frame holds beside its body, logs, headers and message: the variant,
/// ids, stats, the postcard length prefixes. Generous; it is a bound, not a size.
const FRAME_OVERHEAD: usize = 64 * 1024;

/// The largest frame a worker sends that carries no body and no logs: `Hello`,
/// `InitOk`/`InitError`, and `Prepared`/`PrepareError` without artifacts.
pub const MAX_SMALL_FRAME_LEN: usize = MAX_MESSAGE_LEN + FRAME_OVERHEAD;

impl Limits {
    /// The largest answer to an `Invoke` a worker under these limits sends: the
    /// body and the logs (each at most `max_output_bytes`), headers, a message and
    /// the encoding. The supervisor reads a specialized worker's frames against it,
    /// so a worker running hostile code cannot make it buffer more.
    pub fn max_answer_frame_len(&self) -> usize {
        let output = usize::try_from(self.max_output_bytes).unwrap_or(usize::MAX);
        output.saturating_mul(2).saturating_add(MAX_HEADERS_LEN + MAX_SMALL_FRAME_LEN)
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Invoke {
    pub id: u64,
    pub request: HttpRequest,
    /// How long the worker may run this invocation, counted from when it reads the
    /// frame. Relative, so the two processes never compare clocks.
    pub deadline_ms: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HttpRequest {
    pub method: String,
    /// The path after the function's route prefix, starting with `/` (WAGI `PATH_INFO`).
    pub path: String,
    /// The raw query string, without `?`.
    pub query: String,
    /// Header names in lower case, in arrival order.
    pub headers: Vec<(String, String)>,
    #[serde(with = "serde_bytes")]
    pub body: Vec<u8>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HttpResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    #[serde(with = "serde_bytes")]
    pub body: Vec<u8>,
}

/// What a handler wrote to stderr (WASM) or its console (scripts), capped.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Logs {
    pub text: String,
    /// True when output past the cap was dropped.
    pub truncated: bool,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stats {
    /// Time spent in the handler, as the worker measured it.
    pub duration_us: u64,
    /// True when this invocation also instantiated the function (the first one).
    pub cold: bool,
}

/// Why an invocation failed. Each maps to one HTTP status and error code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum FailureKind {
    /// The handler trapped, threw, panicked or exited non-zero.
    HandlerError,
    /// The handler ran past its deadline and was interrupted.
    Timeout,
    /// The handler hit its memory limit.
    MemoryLimit,
    /// The response body or the logs went over the output cap.
    ResponseTooLarge,
}
