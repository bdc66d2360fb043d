//! One lock per function name, for deploys, rollbacks and deletes: versions of
//! one function are numbered and switched in order, while functions never wait
//! for each other (a bundle whose dry-run hangs holds up only its own name).
//!
//! Owns the name → lock table. An entry lives only while someone holds or waits
//! for its lock (a waiter that gives up removes it too), so the table is as big
//! as the deploys in progress, never as the names ever seen. It must never hold
//! the table's own mutex across an await.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use tokio::sync::OwnedMutexGuard;

use crate::store::FunctionName;

type Table = Mutex<HashMap<FunctionName, Arc<tokio::sync::Mutex<()>>>>;

#[derive(Default)]
pub struct NameLocks {
    table: Table,
}

/// Holds one name's lock; dropping it releases the lock and, if no one else
/// waits for it, the table entry.
pub struct Held<'a> {
    // Field order is drop order: the lock goes before the entry is looked at.
    _guard: OwnedMutexGuard<()>,
    _entry: Entry<'a>,
}

/// A reference to one table entry, removed on drop when it was the last.
struct Entry<'a> {
    table: &'a Table,
    name: FunctionName,
    mutex: Option<Arc<tokio::sync::Mutex<()>>>,
}

impl NameLocks {
    /// Waits for `name`'s lock. Cancel-safe: a dropped wait leaves no entry behind.
    pub async fn lock(&self, name: &FunctionName) -> Held<'_> {
        let mutex = self.table.lock().unwrap_or_else(PoisonError::into_inner).entry(name.clone()).or_default().clone();
        let entry = Entry { table: &self.table, name: name.clone(), mutex: Some(mutex.clone()) };
        let guard = mutex.lock_owned().await;
        Held { _guard: guard, _entry: entry }
    }

    /// Names with an entry (held or waited for).
    #[cfg(test)]
    fn len(&self) -> usize {
        self.table.lock().unwrap_or_else(PoisonError::into_inner).len()
    }
}

impl Drop for Entry<'_> {
    fn drop(&mut self) {
        drop(self.mutex.take());
        let mut table = self.table.lock().unwrap_or_else(PoisonError::into_inner);
        // Only the table's own reference left: no one holds or waits for it.
        if table.get(&self.name).is_some_and(|m| Arc::strong_count(m) == 1) {
            table.remove(&self.name);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(s: &str) -> FunctionName {
        FunctionName::parse(s).unwrap()
    }

    #[tokio::test]
    async fn names_do_not_wait_for_each_other_and_entries_go_when_unused() {
        let locks = NameLocks::default();
        let a = locks.lock(&name("a")).await;
        // Another name is not blocked by a.
        let b = tokio::time::timeout(std::time::Duration::from_secs(1), locks.lock(&name("b"))).await;
        assert!(b.is_ok());
        drop(b);
        assert_eq!(locks.len(), 1);
        // The same name waits; a wait given up leaves the entry to its holder only.
        let again = tokio::time::timeout(std::time::Duration::from_millis(50), locks.lock(&name("a"))).await;
        assert!(again.is_err());
        drop(a);
        assert_eq!(locks.len(), 0);
        for i in 0..100 {
            drop(locks.lock(&name(&format!("f{i}"))).await);
        }
        assert_eq!(locks.len(), 0);
    }
}
