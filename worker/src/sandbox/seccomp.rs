//! Compiles [`super::policy`] to seccomp-bpf with `seccompiler` and installs it on
//! every thread of the worker. This is the last step of the sandbox.
//!
//! In seccompiler a filter has one action for every match. The policy has three
//! (allow, an errno, kill), so it becomes one filter per action. The kernel runs every
//! installed filter on every call and keeps the most severe answer:
//! KILL_PROCESS > ERRNO > ALLOW. Each "override" filter (ENOSYS, kill) allows
//! whatever it does not match, and leaves the default to the allowlist:
//! - allowlist: the `ALLOW` entries plus the `ENOSYS` ones, anything else EPERM;
//! - one filter per errno: its entries get that errno, anything else ALLOW;
//! - kill: its entries kill the process, anything else ALLOW.
//!
//! The ENOSYS entries are in the allowlist too. The override's ERRNO then beats the
//! allowlist's ALLOW whatever the install order, instead of relying on "the most
//! recent filter's errno wins between two ERRNOs".

use std::collections::{BTreeMap, BTreeSet};

use seccompiler::{
    BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter, SeccompRule, TargetArch,
};

use tracing::debug;

use super::policy::{self, Action, Arg, Check, Width};
use super::{Done, SandboxError};

/// Builds every filter first, then installs them: a mistake in the policy must not
/// leave half of it installed. The allowlist goes in last, because once it is in force
/// the `seccomp` and `prctl(PR_SET_NO_NEW_PRIVS)` calls that install a filter are refused.
/// TSYNC puts each filter on every existing thread (the deadline clock, tokio's and
/// rayon's), and threads started later inherit them.
pub fn install() -> Result<Done, SandboxError> {
    let arch = TargetArch::try_from(std::env::consts::ARCH).map_err(SandboxError::SeccompArch)?;
    let filters = build(arch, std::process::id())?;
    for (_, program) in &filters {
        seccompiler::apply_filter_all_threads(program).map_err(SandboxError::SeccompInstall)?;
    }
    for rule in policy::rules() {
        debug!(syscall = rule.name, action = ?rule.action, checked = !rule.when.is_empty(), who = rule.who, "seccomp policy");
    }
    let allowed: BTreeSet<i64> = policy::rules().filter(|r| r.action == policy::ALLOW).map(|r| r.nr).collect();
    let named = |action: Action| {
        policy::rules()
            .filter(|r| r.action == action)
            .map(|r| r.name.trim_start_matches("SYS_"))
            .collect::<Vec<_>>()
            .join(" ")
    };
    Ok(Done::Applied(format!(
        "{} syscalls allowed; ENOSYS: {}; kill: {}; everything else EPERM; on all threads",
        allowed.len(),
        named(policy::ENOSYS),
        named(policy::KILL),
    )))
}

/// The filters for `arch`, in install order, each named for the log. `own_pid`
/// goes into the kill/tgkill checks.
pub fn build(arch: TargetArch, own_pid: u32) -> Result<Vec<(&'static str, BpfProgram)>, SandboxError> {
    let mut filters = Vec::new();
    let kill = filter(arch, own_pid, |a| a == policy::KILL, SeccompAction::Allow, SeccompAction::KillProcess)?;
    filters.push(("kill", kill));
    let mut errnos: Vec<i32> = policy::rules()
        .filter_map(|r| match r.action {
            Action::Errno(e) => Some(e),
            _ => None,
        })
        .collect();
    errnos.sort_unstable();
    errnos.dedup();
    for errno in errnos {
        let program = filter(arch, own_pid, |a| a == Action::Errno(errno), SeccompAction::Allow, errno_action(errno))?;
        filters.push(("errno", program));
    }
    let allowlist = filter(
        arch,
        own_pid,
        |a| matches!(a, Action::Allow | Action::Errno(_)),
        errno_action(policy::DEFAULT_ERRNO),
        SeccompAction::Allow,
    )?;
    filters.push(("allowlist", allowlist));
    Ok(filters)
}

/// One BPF program: the entries whose action `pick` accepts get `on_match`,
/// every other call gets `otherwise`.
fn filter(
    arch: TargetArch,
    own_pid: u32,
    pick: impl Fn(Action) -> bool,
    otherwise: SeccompAction,
    on_match: SeccompAction,
) -> Result<BpfProgram, SandboxError> {
    let mut rules: BTreeMap<i64, Vec<SeccompRule>> = BTreeMap::new();
    for rule in policy::rules().filter(|r| pick(r.action)) {
        // An empty list matches on the number alone; each checked entry adds an
        // alternative. The policy's tests forbid mixing the two for one syscall.
        let alternatives = rules.entry(rule.nr).or_default();
        if !rule.when.is_empty() {
            let conditions = rule.when.iter().map(|arg| condition(arg, own_pid)).collect::<Result<Vec<_>, _>>()?;
            alternatives.push(SeccompRule::new(conditions).map_err(SandboxError::SeccompBuild)?);
        }
    }
    let compiled = SeccompFilter::new(rules, otherwise, on_match, arch).map_err(SandboxError::SeccompBuild)?;
    BpfProgram::try_from(compiled).map_err(SandboxError::SeccompBuild)
}

fn condition(arg: &Arg, own_pid: u32) -> Result<SeccompCondition, SandboxError> {
    let width = match arg.width {
        Width::Int => SeccompCmpArgLen::Dword,
        Width::Long => SeccompCmpArgLen::Qword,
    };
    let (op, value) = match arg.check {
        Check::Eq(value) => (SeccompCmpOp::Eq, value),
        Check::MaskedEq { mask, value } => (SeccompCmpOp::MaskedEq(mask), value),
        Check::OwnPid => (SeccompCmpOp::Eq, u64::from(own_pid)),
    };
    SeccompCondition::new(arg.index, width, op, value).map_err(SandboxError::SeccompBuild)
}

fn errno_action(errno: i32) -> SeccompAction {
    // Errno constants are small positive numbers.
    SeccompAction::Errno(errno.unsigned_abs())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Builds (never installs) the filters for this architecture. The syscall
    /// numbers are the host's (`libc::SYS_*`), so only the host's arch makes sense.
    /// Every entry compiles, and the programs fit the kernel's 4096-instruction limit.
    #[test]
    fn the_policy_compiles() {
        let arch = TargetArch::try_from(std::env::consts::ARCH).expect("a supported architecture");
        let filters = build(arch, 4242).expect("policy compiles");
        let names: Vec<_> = filters.iter().map(|(n, _)| *n).collect();
        assert_eq!(names, ["kill", "errno", "allowlist"], "the allowlist must be installed last");
        assert!(filters.iter().all(|(_, p)| !p.is_empty() && p.len() < 4096));
    }
}
