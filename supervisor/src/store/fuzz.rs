//! Fuzzing the two parsers that see untrusted uploads first: the bundle reader
//! (any bytes, and valid zips with random damage) and the `metadata.json` parser.
//! Each runs for `POLYFAAS_FUZZ_SECS` seconds (default 60, what the test command
//! spends); set it higher for a long run, e.g. `POLYFAAS_FUZZ_SECS=3600 cargo test
//! --release -p polyfaas fuzz`. A panic prints the input that caused it.

use std::io::Write;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::time::{Duration, Instant};

use proptest::prelude::*;
use proptest::strategy::ValueTree;
use proptest::test_runner::{Config, TestRunner};

use super::bundle::{UnpackLimits, parse_metadata, unpack};

fn budget() -> Duration {
    Duration::from_secs(std::env::var("POLYFAAS_FUZZ_SECS").ok().and_then(|s| s.parse().ok()).unwrap_or(60))
}

/// Runs `check` on values of `strategy` until the budget is spent.
fn fuzz<T: std::fmt::Debug>(strategy: impl Strategy<Value = T>, mut check: impl FnMut(&T)) -> u64 {
    let mut runner = TestRunner::new(Config { failure_persistence: None, ..Config::default() });
    let deadline = Instant::now() + budget();
    let mut runs = 0;
    while Instant::now() < deadline {
        let Ok(tree) = strategy.new_tree(&mut runner) else { continue };
        let value = tree.current();
        if catch_unwind(AssertUnwindSafe(|| check(&value))).is_err() {
            panic!("panicked on input: {value:?}");
        }
        runs += 1;
    }
    runs
}

fn valid_zip() -> Vec<u8> {
    let mut w = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    for (name, body) in
        [("metadata.json", &br#"{"language":"js","entrypointFile":"lib/h.js"}"#[..]), ("lib/h.js", b"handler")]
    {
        let _ = w.start_file(name, zip::write::SimpleFileOptions::default());
        let _ = w.write_all(body);
    }
    w.finish().map(|c| c.into_inner()).unwrap_or_default()
}

/// A valid bundle with bytes overwritten, the tail cut, or bytes inserted.
fn damaged_zip() -> impl Strategy<Value = Vec<u8>> {
    let base = valid_zip();
    let len = base.len();
    (proptest::collection::vec((0..len, any::<u8>()), 0..16), 0..=len, proptest::collection::vec(any::<u8>(), 0..8))
        .prop_map(move |(flips, cut, insert)| {
            let mut bytes = base.clone();
            for (at, value) in flips {
                bytes[at] = value;
            }
            bytes.truncate(cut.max(1));
            let at = bytes.len() / 2;
            bytes.splice(at..at, insert);
            bytes
        })
}

#[test]
fn fuzz_the_bundle_reader() {
    let dir = std::env::temp_dir().join(format!("polyfaas-fuzz-{}", std::process::id()));
    let limits = UnpackLimits { max_entries: 64, max_unpacked_bytes: 1 << 20 };
    let inputs = prop_oneof![proptest::collection::vec(any::<u8>(), 0..512), damaged_zip()];
    let runs = fuzz(inputs, |bytes| {
        let _ = std::fs::remove_dir_all(&dir);
        let _ = std::fs::create_dir_all(&dir);
        let _ = unpack(bytes, &dir, limits);
        // Whatever it accepted stays inside the directory.
        assert!(walk_is_inside(&dir, &dir), "wrote outside {}", dir.display());
    });
    let _ = std::fs::remove_dir_all(&dir);
    assert!(runs > 0);
}

#[test]
fn fuzz_the_metadata_parser() {
    let inputs = prop_oneof![
        "\\PC{0,200}",
        "[{}\\[\\]\":, a-zA-Z0-9_.\\-/]{0,120}",
        ("(wasm|js|python|ruby|x)", "[a-z./\\\\]{0,12}", any::<i64>(), "[A-Z=\\x00]{0,4}").prop_map(|(l, e, n, k)| {
            format!(r#"{{"language":"{l}","entrypointFile":"{e}","timeoutMs":{n},"env":{{"{k}":"v"}}}}"#)
        }),
    ];
    let runs = fuzz(inputs, |text: &String| {
        let _ = parse_metadata(text);
    });
    assert!(runs > 0);
}

fn walk_is_inside(root: &std::path::Path, dir: &std::path::Path) -> bool {
    std::fs::read_dir(dir).map_or(true, |entries| {
        entries.flatten().all(|e| {
            let path = e.path();
            let inside = path.canonicalize().map_or(true, |p| p.starts_with(root.canonicalize().unwrap_or_default()));
            inside && (!path.is_dir() || walk_is_inside(root, &path))
        })
    })
}
