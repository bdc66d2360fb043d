//! Function names: validated once, at the edge, so no unchecked name ever reaches
//! the filesystem or the pool.

use std::fmt;
use std::sync::Arc;

/// A name matching `^[a-z0-9][a-z0-9_-]{0,62}$`. Shared, not copied: the pool
/// keys its maps by it and clones it on every invocation.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FunctionName(Arc<str>);

#[derive(Debug, thiserror::Error)]
#[error(
    "invalid function name {0:?}: use 1 to 63 characters of a-z, 0-9, '_' and '-', starting with a letter or digit"
)]
pub struct InvalidName(pub String);

impl FunctionName {
    pub fn parse(s: &str) -> Result<Self, InvalidName> {
        let mut bytes = s.bytes();
        let first_ok = bytes.next().is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
        let rest_ok = bytes.all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-');
        if first_ok && rest_ok && s.len() <= 63 {
            Ok(Self(Arc::from(s)))
        } else {
            Err(InvalidName(s.chars().take(80).collect()))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for FunctionName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_the_pattern_and_nothing_else() {
        for ok in ["a", "rust-wasm", "0_x", &"a".repeat(63)] {
            assert!(FunctionName::parse(ok).is_ok(), "{ok}");
        }
        for bad in ["", "-a", "_a", "A", "a/b", "..", "a.b", "a b", "é", &"a".repeat(64), "a\0"] {
            assert!(FunctionName::parse(bad).is_err(), "{bad:?}");
        }
    }
}
