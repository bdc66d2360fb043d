//! The local store's numbering and current-version rules, as the shared store
//! and its follower use them: versions installed out of order, from records
//! another node made.

use std::io::Write;

use super::*;

fn store(dir: &Path) -> LocalStore {
    let limits = FunctionLimits { timeout_ms: 1000, memory_mb: 64, concurrency: 4 };
    let policy = LimitsPolicy { default: limits, max: limits };
    let unpack = UnpackLimits { max_entries: 100, max_unpacked_bytes: 1 << 20 };
    LocalStore::open(dir, policy, unpack, Quotas { max_functions: 10, max_store_bytes: 1 << 30 }).expect("open")
}

fn bundle(tag: &str) -> Vec<u8> {
    let mut w = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    for (name, body) in
        [("metadata.json", &br#"{"language":"js","entrypointFile":"h.js"}"#[..]), ("h.js", tag.as_bytes())]
    {
        w.start_file(name, zip::write::SimpleFileOptions::default()).expect("entry");
        w.write_all(body).expect("write");
    }
    w.finish().expect("finish").into_inner()
}

fn record(version: u64) -> VersionRecord {
    VersionRecord { version, sha256: "00".into(), size: 1, language: "js".into(), created_unix: 1 }
}

fn versions(store: &LocalStore, name: &FunctionName) -> (u64, Vec<u64>) {
    let (current, records) = store.versions(name).expect("function");
    (current.version, records.iter().map(|r| r.version).collect())
}

#[test]
fn versions_installed_out_of_order_keep_the_current_one_and_their_numbers() {
    let tmp = tempfile::tempdir().expect("tmp");
    let store = store(tmp.path());
    let name = FunctionName::parse("f").expect("name");
    // A follower installs the cluster's current (5) first, then older ones.
    let staged = store.stage(&name, &bundle("five")).expect("stage");
    store.commit_as(staged, Some(record(5)), false).expect("commit 5");
    assert_eq!(versions(&store, &name), (5, vec![5]), "a function's first version is current whatever was asked");
    let staged = store.stage(&name, &bundle("three")).expect("stage");
    store.commit_as(staged, Some(record(3)), false).expect("commit 3");
    assert_eq!(versions(&store, &name), (5, vec![3, 5]));
    // A number held already is refused, and leaves nothing behind.
    let staged = store.stage(&name, &bundle("again")).expect("stage");
    assert!(matches!(store.commit_as(staged, Some(record(3)), true), Err(StoreError::Index(_))));
    assert_eq!(versions(&store, &name), (5, vec![3, 5]));
    // The local numbering continues after the highest.
    let staged = store.stage(&name, &bundle("six")).expect("stage");
    assert_eq!(store.commit(staged).expect("commit").version, 6);
    assert_eq!(versions(&store, &name), (6, vec![3, 5, 6]));
    // Reopened from disk, the same.
    drop(store);
    let store = super::tests::store(tmp.path());
    assert_eq!(versions(&store, &name), (6, vec![3, 5, 6]));
}

#[test]
fn removing_versions_never_removes_the_current_one() {
    let tmp = tempfile::tempdir().expect("tmp");
    let store = store(tmp.path());
    let name = FunctionName::parse("f").expect("name");
    for tag in ["a", "b", "c"] {
        let staged = store.stage(&name, &bundle(tag)).expect("stage");
        store.commit(staged).expect("commit");
    }
    store.rollback(&name, Some(2)).expect("rollback");
    store.remove_versions(&name, &[1, 2, 3]).expect("remove");
    assert_eq!(versions(&store, &name), (2, vec![2]));
    assert!(!tmp.path().join("functions/f/1").exists() && !tmp.path().join("functions/f/3").exists());
}

#[test]
fn a_prune_keeps_the_newest_and_the_current() {
    assert_eq!(to_prune(&[1, 2, 3, 4, 5], 5, 2), vec![3, 2, 1]);
    assert_eq!(to_prune(&[1, 2, 3, 4, 5], 1, 2), vec![3, 2]);
    assert_eq!(to_prune(&[1, 2], 2, 0), vec![1], "at least one is kept");
    assert!(to_prune(&[4], 4, 1).is_empty());
}
