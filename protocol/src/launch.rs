//! How a worker is started: its command line, built by the supervisor and parsed by
//! the worker from this one definition. Anything that must reach a worker before
//! its first message (the socket's descriptor, its runtime, the sandbox) is here;
//! everything else is a message.

use std::ffi::OsString;
use std::path::PathBuf;

use crate::Language;
use crate::sandbox::SandboxConfig;

/// Where a worker keeps its socket once started, whatever number it inherited
/// it on: a handler that forges frames writes to this descriptor.
pub const SOCKET_FD: i32 = 3;

/// A worker that serves the supervisor on a socket.
#[derive(Debug, Clone)]
pub struct WorkerLaunch {
    /// The descriptor number the worker inherits its socket on: the number the
    /// supervisor's end had (at least 3). The worker moves it to [`SOCKET_FD`].
    pub fd: i32,
    pub language: Language,
    /// The Ruby runtime's compiled module, opened before the sandbox closes the
    /// filesystem.
    pub ruby_module: Option<PathBuf>,
    /// The supervisor's pid: the worker exits if its parent is not this one.
    pub parent_pid: Option<u32>,
    pub sandbox: SandboxConfig,
}

/// What `polyfaas-worker` was asked to do.
#[derive(Debug)]
pub enum LaunchMode {
    Serve(Box<WorkerLaunch>),
    /// Compile a runtime module once into a cache directory and print its path.
    Precompile {
        wasm: PathBuf,
        cache_dir: PathBuf,
    },
}

#[derive(Debug, thiserror::Error)]
pub enum LaunchError {
    #[error("{0} needs a value")]
    MissingValue(String),
    #[error("{0} must be UTF-8")]
    NotUtf8(String),
    #[error("{0}: {1}")]
    Invalid(&'static str, String),
    #[error("unknown argument {0}")]
    Unknown(String),
    #[error("{0} is required")]
    Required(&'static str),
}

impl WorkerLaunch {
    /// The command line, without the program name.
    pub fn to_args(&self) -> Vec<OsString> {
        let mut args: Vec<OsString> =
            vec!["--fd".into(), self.fd.to_string().into(), "--language".into(), self.language.as_str().into()];
        if let Some(path) = &self.ruby_module {
            args.extend(["--ruby-module".into(), path.clone().into_os_string()]);
        }
        if let Some(pid) = self.parent_pid {
            args.extend(["--parent-pid".into(), pid.to_string().into()]);
        }
        args.extend(["--sandbox".into(), self.sandbox.to_json().into()]);
        args
    }
}

impl LaunchMode {
    /// Parses a worker's command line (without the program name).
    ///
    /// # Errors
    /// A missing, malformed or unknown argument.
    pub fn parse(args: impl IntoIterator<Item = OsString>) -> Result<Self, LaunchError> {
        let (mut fd, mut language, mut ruby_module, mut parent_pid) = (None, None, None, None);
        let mut sandbox = SandboxConfig::default();
        let (mut precompile, mut cache_dir) = (None, None);
        let mut args = args.into_iter();
        while let Some(arg) = args.next() {
            let arg = arg.to_string_lossy().into_owned();
            let value = args.next().ok_or_else(|| LaunchError::MissingValue(arg.clone()))?;
            let text = || value.to_str().map(str::to_string).ok_or_else(|| LaunchError::NotUtf8(arg.clone()));
            match arg.as_str() {
                "--fd" => {
                    fd = Some(text()?.parse().map_err(|_| LaunchError::Invalid("--fd", text().unwrap_or_default()))?)
                }
                "--language" => {
                    let name = text()?;
                    language = Some(Language::parse(&name).ok_or(LaunchError::Invalid("--language", name))?);
                }
                "--ruby-module" => ruby_module = Some(PathBuf::from(&value)),
                "--parent-pid" => {
                    parent_pid = Some(
                        text()?
                            .parse()
                            .map_err(|_| LaunchError::Invalid("--parent-pid", text().unwrap_or_default()))?,
                    )
                }
                "--sandbox" => {
                    sandbox = SandboxConfig::from_json(&text()?)
                        .map_err(|e| LaunchError::Invalid("--sandbox", e.to_string()))?
                }
                "--precompile" => precompile = Some(PathBuf::from(&value)),
                "--cache-dir" => cache_dir = Some(PathBuf::from(&value)),
                _ => return Err(LaunchError::Unknown(arg)),
            }
        }
        if let Some(wasm) = precompile {
            return Ok(LaunchMode::Precompile {
                wasm,
                cache_dir: cache_dir.ok_or(LaunchError::Required("--cache-dir"))?,
            });
        }
        Ok(LaunchMode::Serve(Box::new(WorkerLaunch {
            fd: fd.ok_or(LaunchError::Required("--fd"))?,
            language: language.ok_or(LaunchError::Required("--language"))?,
            ruby_module,
            parent_pid,
            sandbox,
        })))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_launch_survives_its_command_line() {
        let mut sandbox = SandboxConfig::default();
        sandbox.layers.switch_off("netns").expect("known");
        let launch = WorkerLaunch {
            fd: 3,
            language: Language::Ruby,
            ruby_module: Some(PathBuf::from("/cache/ruby.cwasm")),
            parent_pid: Some(42),
            sandbox,
        };
        let Ok(LaunchMode::Serve(back)) = LaunchMode::parse(launch.to_args()) else { panic!("parses") };
        assert_eq!((back.fd, back.language, back.parent_pid), (3, Language::Ruby, Some(42)));
        assert_eq!(back.ruby_module, launch.ruby_module);
        assert!(!back.sandbox.layers.netns && back.sandbox.layers.seccomp);
    }

    #[test]
    fn bad_command_lines_are_errors() {
        let parse = |args: &[&str]| LaunchMode::parse(args.iter().map(OsString::from));
        assert!(matches!(parse(&["--fd"]), Err(LaunchError::MissingValue(_))));
        assert!(matches!(parse(&["--fd", "x", "--language", "js"]), Err(LaunchError::Invalid("--fd", _))));
        assert!(matches!(parse(&["--fd", "3", "--language", "cobol"]), Err(LaunchError::Invalid("--language", _))));
        assert!(matches!(parse(&["--fd", "3"]), Err(LaunchError::Required("--language"))));
        assert!(matches!(parse(&["--what", "3"]), Err(LaunchError::Unknown(_))));
        assert!(matches!(parse(&["--precompile", "x.wasm"]), Err(LaunchError::Required("--cache-dir"))));
    }
}
