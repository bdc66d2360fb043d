//! The record of what the sandbox did: for each step, applied, skipped by
//! configuration, not applicable here, or failed and degraded. Each entry is logged
//! as it is recorded. The whole report is one line for the startup log (and for
//! `Hello`, if the protocol grows a field for it).

use std::fmt;

use tracing::{error, info, warn};

/// One step of the sandbox, in the order they run (see the module doc of `sandbox`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layer {
    ParentDeath,
    ProcessGroup,
    InheritedFds,
    NoNewPrivs,
    Rlimits,
    NetNs,
    Privileges,
    ParentDeathRearmed,
    NotDumpable,
    LandlockEarly,
    LandlockFunction,
    RuntimeThreads,
    FunctionMemory,
    Seccomp,
}

impl Layer {
    pub fn name(self) -> &'static str {
        match self {
            Layer::ParentDeath => "parent-death",
            Layer::ProcessGroup => "process-group",
            Layer::InheritedFds => "close-fds",
            Layer::NoNewPrivs => "no-new-privs",
            Layer::Rlimits => "rlimits",
            Layer::NetNs => "netns",
            Layer::Privileges => "drop-privileges",
            Layer::ParentDeathRearmed => "parent-death-rearmed",
            Layer::NotDumpable => "not-dumpable",
            Layer::LandlockEarly => "landlock-early",
            Layer::LandlockFunction => "landlock-function",
            Layer::RuntimeThreads => "runtime-threads",
            Layer::FunctionMemory => "function-memory",
            Layer::Seccomp => "seccomp",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// In force; the text says what exactly (limits, uid, ABI, ...).
    Applied(String),
    /// Switched off in `SandboxConfig::layers`.
    SkippedByConfig,
    /// Nothing to do in this situation (e.g. no privileges to drop when not root).
    NotApplicable(&'static str),
    /// Failed, and `allow_degraded` let the worker go on without it.
    Degraded(String),
}

/// The steps of one phase, in the order they ran.
#[derive(Debug, Default)]
pub struct Report {
    entries: Vec<(Layer, Outcome)>,
}

impl Report {
    /// Adds a step's outcome and logs it. A skipped step is a warning and a degraded
    /// one an error, so a weakened sandbox shows in the logs without asking.
    pub(super) fn record(&mut self, layer: Layer, outcome: Outcome) {
        let name = layer.name();
        match &outcome {
            Outcome::Applied(detail) => info!(layer = name, "sandbox: {detail}"),
            Outcome::NotApplicable(why) => info!(layer = name, "sandbox: not applicable: {why}"),
            Outcome::SkippedByConfig => {
                warn!(layer = name, "sandbox layer switched OFF by configuration")
            }
            Outcome::Degraded(why) => {
                error!(
                    layer = name,
                    "SANDBOX DEGRADED: layer not in force ({why}); serving anyway because allow-degraded is set"
                )
            }
        }
        self.entries.push((layer, outcome));
    }

    pub fn outcome(&self, layer: Layer) -> Option<&Outcome> {
        self.entries.iter().find(|(l, _)| *l == layer).map(|(_, o)| o)
    }

    pub fn applied(&self, layer: Layer) -> bool {
        matches!(self.outcome(layer), Some(Outcome::Applied(_)))
    }
}

/// `parent-death=applied netns=n/a(not root ...) seccomp=DEGRADED(...)`
impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, (layer, outcome)) in self.entries.iter().enumerate() {
            if i > 0 {
                f.write_str(" ")?;
            }
            let name = layer.name();
            match outcome {
                Outcome::Applied(_) => write!(f, "{name}=applied")?,
                Outcome::SkippedByConfig => write!(f, "{name}=OFF")?,
                Outcome::NotApplicable(why) => write!(f, "{name}=n/a({why})")?,
                Outcome::Degraded(why) => write!(f, "{name}=DEGRADED({why})")?,
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_each_kind_of_outcome() {
        let mut report = Report::default();
        report.record(Layer::NoNewPrivs, Outcome::Applied("set".into()));
        report.record(Layer::NetNs, Outcome::NotApplicable("not root"));
        report.record(Layer::Seccomp, Outcome::SkippedByConfig);
        report.record(Layer::LandlockEarly, Outcome::Degraded("no Landlock".into()));
        assert!(report.applied(Layer::NoNewPrivs) && !report.applied(Layer::NetNs));
        assert_eq!(report.outcome(Layer::Seccomp), Some(&Outcome::SkippedByConfig));
        assert_eq!(
            report.to_string(),
            "no-new-privs=applied netns=n/a(not root) seccomp=OFF landlock-early=DEGRADED(no Landlock)"
        );
    }
}
