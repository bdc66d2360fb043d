//! Node's resolution rules, on a bundle laid out in a temp directory.

use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};

use super::{Format, Kind, ResolveError, Resolver, normalize};

struct Bundle(std::path::PathBuf);

impl Bundle {
    fn new(files: &[(&str, &str)]) -> Self {
        static N: AtomicUsize = AtomicUsize::new(0);
        let n = N.fetch_add(1, Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("pf-resolve-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        for (path, text) in files {
            let p = dir.join(path);
            std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
            std::fs::write(p, text).expect("write");
        }
        Bundle(dir)
    }

    fn resolve(&self, spec: &str, from: &str, kind: Kind) -> Result<(String, Format), ResolveError> {
        Resolver::new(&self.0).resolve(spec, Path::new(from), kind).map(|(p, f)| (p.display().to_string(), f))
    }
}

impl Drop for Bundle {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[test]
fn relative_extensionless_directory_and_json() {
    let b = Bundle::new(&[
        ("h.js", ""),
        ("lib/a.js", "module.exports = 1"),
        ("lib/b/index.js", "exports.x = 1"),
        ("data.json", "{}"),
        ("m.mjs", ""),
    ]);
    assert_eq!(b.resolve("./lib/a", "h.js", Kind::Require), Ok(("lib/a.js".into(), Format::CommonJs)));
    assert_eq!(b.resolve("./lib/b", "h.js", Kind::Require), Ok(("lib/b/index.js".into(), Format::CommonJs)));
    assert_eq!(b.resolve("../data.json", "lib/a.js", Kind::Import), Ok(("data.json".into(), Format::Json)));
    assert_eq!(b.resolve("./m.mjs", "h.js", Kind::Require), Ok(("m.mjs".into(), Format::Esm)));
    assert_eq!(b.resolve("../x", "h.js", Kind::Require), Err(ResolveError::Outside("../x".into())));
    assert_eq!(b.resolve("/etc/passwd", "h.js", Kind::Require), Err(ResolveError::Outside("/etc/passwd".into())));
    assert!(matches!(b.resolve("./nope", "h.js", Kind::Require), Err(ResolveError::NotFound(..))));
    assert_eq!(b.resolve("node:fs", "h.js", Kind::Require), Err(ResolveError::Builtin("fs".into())));
    assert_eq!(b.resolve("path", "h.js", Kind::Import), Err(ResolveError::Builtin("path".into())));
}

#[test]
fn packages_main_module_and_exports_conditions() {
    let b = Bundle::new(&[
        ("h.js", ""),
        ("node_modules/plain/package.json", r#"{"main": "lib/main"}"#),
        ("node_modules/plain/lib/main.js", ""),
        ("node_modules/dual/package.json", r#"{"main": "cjs.js", "module": "esm.js"}"#),
        ("node_modules/dual/cjs.js", "module.exports = 1"),
        ("node_modules/dual/esm.js", "export default 1"),
        (
            "node_modules/@s/x/package.json",
            r#"{"type": "module", "exports": {".": {"types": "./t.d.ts", "import": "./i.js", "require": "./r.cjs"},
                "./sub/*": "./src/*.js", "./hidden": null}}"#,
        ),
        ("node_modules/@s/x/i.js", ""),
        ("node_modules/@s/x/r.cjs", ""),
        ("node_modules/@s/x/src/deep.js", ""),
        ("node_modules/@s/x/hidden.js", ""),
        ("node_modules/sugar/package.json", r#"{"exports": "./only.js"}"#),
        ("node_modules/sugar/only.js", ""),
        ("node_modules/inner/package.json", r##"{"imports": {"#dep": "./dep.js"}}"##),
        ("node_modules/inner/index.js", ""),
        ("node_modules/inner/dep.js", ""),
        ("node_modules/inner/node_modules/plain/index.js", ""),
    ]);
    assert_eq!(b.resolve("plain", "h.js", Kind::Require).map(|r| r.0), Ok("node_modules/plain/lib/main.js".into()));
    assert_eq!(b.resolve("dual", "h.js", Kind::Require).map(|r| r.0), Ok("node_modules/dual/cjs.js".into()));
    assert_eq!(b.resolve("dual", "h.js", Kind::Import), Ok(("node_modules/dual/esm.js".into(), Format::Esm)));
    assert_eq!(b.resolve("@s/x", "h.js", Kind::Import), Ok(("node_modules/@s/x/i.js".into(), Format::Esm)));
    assert_eq!(b.resolve("@s/x", "h.js", Kind::Require), Ok(("node_modules/@s/x/r.cjs".into(), Format::CommonJs)));
    assert_eq!(
        b.resolve("@s/x/sub/deep", "h.js", Kind::Import).map(|r| r.0),
        Ok("node_modules/@s/x/src/deep.js".into())
    );
    assert!(matches!(b.resolve("@s/x/hidden", "h.js", Kind::Import), Err(ResolveError::NotExported(..))));
    assert_eq!(b.resolve("sugar", "h.js", Kind::Import).map(|r| r.0), Ok("node_modules/sugar/only.js".into()));
    assert!(matches!(b.resolve("sugar/only.js", "h.js", Kind::Import), Err(ResolveError::NotExported(..))));
    // The nearest node_modules wins, walking up from the referrer.
    let inner = "node_modules/inner/index.js";
    assert_eq!(
        b.resolve("plain", inner, Kind::Require).map(|r| r.0),
        Ok("node_modules/inner/node_modules/plain/index.js".into())
    );
    assert_eq!(b.resolve("#dep", inner, Kind::Require).map(|r| r.0), Ok("node_modules/inner/dep.js".into()));
}

#[test]
fn symlinks_are_followed_inside_and_refused_out() {
    let b = Bundle::new(&[("h.js", ""), ("real/a.js", "")]);
    std::os::unix::fs::symlink("real", b.0.join("alias")).expect("symlink");
    std::os::unix::fs::symlink("../../etc", b.0.join("real/up")).expect("symlink");
    std::os::unix::fs::symlink("/etc/passwd", b.0.join("abs.js")).expect("symlink");
    assert_eq!(b.resolve("./alias/a.js", "h.js", Kind::Require).map(|r| r.0), Ok("real/a.js".into()));
    assert!(matches!(b.resolve("./abs.js", "h.js", Kind::Require), Err(ResolveError::Outside(_))));
    assert!(b.resolve("./real/up/passwd", "h.js", Kind::Require).is_err());
    assert_eq!(normalize(Path::new("a/../../b")), None);
}
