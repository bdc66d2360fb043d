//! Node's module resolution, inside one bundle directory only.
//!
//! Owns: turning a specifier (`./x`, `pkg`, `pkg/sub`, `#internal`) seen from a
//! module into a bundle-relative file path and its format (ES module, CommonJS,
//! JSON): `node_modules` lookup walking up to the bundle root, `package.json`
//! `exports`/`imports` (conditions, subpath patterns), `main`/`module`,
//! extension and `index` probing, and symlinks followed by hand.
//! Must never: return a path that leaves the root (`..` above it, an absolute
//! path, a symlink that leads out), or touch the filesystem through anything but
//! paths relative to the root it was given (the worker's working directory).

use std::cell::RefCell;
use std::collections::HashMap;
use std::path::{Component, Path, PathBuf};
use std::rc::Rc;

use super::json::Json;

/// Who is asking: `import` and `require` see different `exports` conditions.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Kind {
    Import,
    Require,
}

/// How a resolved file is run.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Format {
    Esm,
    CommonJs,
    Json,
}

impl Format {
    pub fn name(self) -> &'static str {
        match self {
            Format::Esm => "module",
            Format::CommonJs => "commonjs",
            Format::Json => "json",
        }
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ResolveError {
    #[error("cannot find module `{0}` from `{1}`")]
    NotFound(String, String),
    #[error("module `{0}` is outside the bundle")]
    Outside(String),
    #[error("`{0}` is a Node built-in module, which polyfaas does not provide (bundle a replacement)")]
    Builtin(String),
    #[error("package subpath `{1}` is not exported by `{0}`")]
    NotExported(String, String),
}

/// Node's built-in module names (`node:` specifiers are refused too).
const BUILTINS: &[&str] = &[
    "assert",
    "async_hooks",
    "buffer",
    "child_process",
    "cluster",
    "console",
    "constants",
    "crypto",
    "dgram",
    "diagnostics_channel",
    "dns",
    "domain",
    "events",
    "fs",
    "http",
    "http2",
    "https",
    "inspector",
    "module",
    "net",
    "os",
    "path",
    "perf_hooks",
    "process",
    "punycode",
    "querystring",
    "readline",
    "repl",
    "stream",
    "string_decoder",
    "sys",
    "timers",
    "tls",
    "trace_events",
    "tty",
    "url",
    "util",
    "v8",
    "vm",
    "wasi",
    "worker_threads",
    "zlib",
];

const FILE_EXTENSIONS: &[&str] = &["js", "mjs", "cjs", "json"];

pub struct Resolver {
    /// The bundle directory: `.` in the worker, a temp dir in unit tests.
    root: PathBuf,
    /// Parsed `package.json` files by bundle-relative directory (`None`: absent or unreadable).
    packages: RefCell<HashMap<PathBuf, Option<Rc<Json>>>>,
}

impl Resolver {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into(), packages: RefCell::default() }
    }

    /// Reads a bundle file by its bundle-relative path (already resolved).
    pub fn read(&self, rel: &Path) -> std::io::Result<String> {
        std::fs::read_to_string(self.root.join(rel))
    }

    /// Resolves `spec` as seen from the module at `referrer` (bundle-relative).
    pub fn resolve(&self, spec: &str, referrer: &Path, kind: Kind) -> Result<(PathBuf, Format), ResolveError> {
        let not_found = || ResolveError::NotFound(spec.to_string(), referrer.display().to_string());
        let base = referrer.parent().unwrap_or(Path::new(""));
        let bare = spec.split('/').next().unwrap_or(spec);
        let path = if let Some(name) = spec.strip_prefix("node:") {
            return Err(ResolveError::Builtin(name.to_string()));
        } else if BUILTINS.contains(&bare) {
            return Err(ResolveError::Builtin(spec.to_string()));
        } else if spec.starts_with('/') {
            return Err(ResolveError::Outside(spec.to_string()));
        } else if spec == "." || spec == ".." || spec.starts_with("./") || spec.starts_with("../") {
            let joined = normalize(&base.join(spec)).ok_or_else(|| ResolveError::Outside(spec.to_string()))?;
            self.load_file_or_dir(&joined, kind).ok_or_else(not_found)?
        } else if spec.starts_with('#') {
            self.package_imports(spec, base, kind)?.ok_or_else(not_found)?
        } else {
            self.node_modules(spec, base, kind)?.ok_or_else(not_found)?
        };
        let real = self.real_path(&path).ok_or_else(|| ResolveError::Outside(spec.to_string()))?;
        let format = self.format_of(&real);
        Ok((real, format))
    }

    /// The format Node would give the file: by extension, then the nearest
    /// `package.json` `type`, then (Node's syntax detection) import/export syntax.
    pub fn format_of(&self, rel: &Path) -> Format {
        match rel.extension().and_then(|e| e.to_str()) {
            Some("mjs") => return Format::Esm,
            Some("cjs") => return Format::CommonJs,
            Some("json") => return Format::Json,
            _ => {}
        }
        let mut dir = rel.parent();
        while let Some(d) = dir {
            if let Some(pkg) = self.package(d) {
                match pkg.get("type").and_then(Json::as_str) {
                    Some("module") => return Format::Esm,
                    Some("commonjs") => return Format::CommonJs,
                    _ => {}
                }
                break;
            }
            dir = d.parent();
        }
        match self.read(rel) {
            Ok(code) if has_module_syntax(&code) => Format::Esm,
            _ => Format::CommonJs,
        }
    }

    fn is_file(&self, rel: &Path) -> bool {
        self.root.join(rel).is_file()
    }

    fn package(&self, dir: &Path) -> Option<Rc<Json>> {
        if let Some(cached) = self.packages.borrow().get(dir) {
            return cached.clone();
        }
        let parsed = self.read(&dir.join("package.json")).ok().and_then(|t| Json::parse(&t)).map(Rc::new);
        self.packages.borrow_mut().insert(dir.to_path_buf(), parsed.clone());
        parsed
    }

    /// Node's LOAD_AS_FILE then LOAD_AS_DIRECTORY (extensionless imports too).
    fn load_file_or_dir(&self, p: &Path, kind: Kind) -> Option<PathBuf> {
        if self.is_file(p) {
            return Some(p.to_path_buf());
        }
        if let Some(name) = p.file_name().and_then(|n| n.to_str()) {
            for ext in FILE_EXTENSIONS {
                let candidate = p.with_file_name(format!("{name}.{ext}"));
                if self.is_file(&candidate) {
                    return Some(candidate);
                }
            }
        }
        self.load_dir(p, kind)
    }

    fn load_dir(&self, dir: &Path, kind: Kind) -> Option<PathBuf> {
        if let Some(pkg) = self.package(dir) {
            let fields: &[&str] = if kind == Kind::Import { &["module", "main"] } else { &["main"] };
            for field in fields {
                if let Some(main) = pkg.get(field).and_then(Json::as_str) {
                    let target = normalize(&dir.join(main))?;
                    if !target.starts_with(dir) {
                        return None;
                    }
                    if let Some(found) = self.load_file_or_index(&target) {
                        return Some(found);
                    }
                }
            }
        }
        self.load_index(dir)
    }

    fn load_file_or_index(&self, p: &Path) -> Option<PathBuf> {
        if self.is_file(p) {
            return Some(p.to_path_buf());
        }
        let name = p.file_name().and_then(|n| n.to_str())?;
        for ext in FILE_EXTENSIONS {
            let candidate = p.with_file_name(format!("{name}.{ext}"));
            if self.is_file(&candidate) {
                return Some(candidate);
            }
        }
        self.load_index(p)
    }

    fn load_index(&self, dir: &Path) -> Option<PathBuf> {
        FILE_EXTENSIONS.iter().map(|ext| dir.join(format!("index.{ext}"))).find(|c| self.is_file(c))
    }

    /// A bare specifier: `node_modules/<name>` in each directory from the
    /// referrer's up to the bundle root, never above it.
    fn node_modules(&self, spec: &str, base: &Path, kind: Kind) -> Result<Option<PathBuf>, ResolveError> {
        let mut parts = spec.splitn(if spec.starts_with('@') { 3 } else { 2 }, '/');
        let name = match (spec.starts_with('@'), parts.next(), parts.next()) {
            (true, Some(scope), Some(pkg)) => format!("{scope}/{pkg}"),
            (false, Some(pkg), _) => pkg.to_string(),
            _ => return Ok(None),
        };
        let sub = &spec[name.len()..];
        if name.split('/').any(|c| c.is_empty() || c == "." || c == "..") {
            return Err(ResolveError::Outside(spec.to_string()));
        }
        let mut dir = Some(base);
        while let Some(d) = dir {
            dir = d.parent();
            if d.file_name().is_some_and(|n| n == "node_modules") {
                continue;
            }
            let pkg_dir = d.join("node_modules").join(&name);
            if !self.root.join(&pkg_dir).is_dir() {
                continue;
            }
            let exports = self.package(&pkg_dir).and_then(|p| p.get("exports").cloned());
            if let Some(exports) = exports {
                let subpath = format!(".{sub}");
                let target = self.exports_target(&exports, &subpath, &pkg_dir, kind);
                return match target {
                    Some(t) => Ok(Some(t)),
                    None => Err(ResolveError::NotExported(name, subpath)),
                };
            }
            let sub = sub.trim_start_matches('/');
            if sub.is_empty() {
                return Ok(self.load_dir(&pkg_dir, kind));
            }
            let joined = normalize(&pkg_dir.join(sub)).ok_or_else(|| ResolveError::Outside(spec.to_string()))?;
            return Ok(self.load_file_or_dir(&joined, kind));
        }
        Ok(None)
    }

    /// `#name` specifiers: the `imports` map of the nearest `package.json`.
    fn package_imports(&self, spec: &str, base: &Path, kind: Kind) -> Result<Option<PathBuf>, ResolveError> {
        let mut dir = Some(base);
        while let Some(d) = dir {
            if let Some(pkg) = self.package(d) {
                let Some(imports) = pkg.get("imports") else { return Ok(None) };
                return Ok(self.map_lookup(imports, spec, d, kind));
            }
            dir = d.parent();
        }
        Ok(None)
    }

    /// PACKAGE_EXPORTS_RESOLVE: sugar (`"exports": "./x.js"` or conditions
    /// only), exact subpaths, then the longest matching `*` pattern.
    fn exports_target(&self, exports: &Json, subpath: &str, pkg_dir: &Path, kind: Kind) -> Option<PathBuf> {
        let is_map = matches!(exports, Json::Object(entries) if entries.iter().any(|(k, _)| k.starts_with('.')));
        if !is_map {
            return if subpath == "." { self.target(exports, None, pkg_dir, kind) } else { None };
        }
        self.map_lookup(exports, subpath, pkg_dir, kind)
    }

    fn map_lookup(&self, map: &Json, key: &str, pkg_dir: &Path, kind: Kind) -> Option<PathBuf> {
        let Json::Object(entries) = map else { return None };
        if let Some((_, t)) = entries.iter().find(|(k, _)| k == key && !k.contains('*')) {
            return self.target(t, None, pkg_dir, kind);
        }
        let mut best: Option<(&str, &Json, String)> = None;
        for (k, t) in entries {
            let Some((prefix, suffix)) = k.split_once('*') else { continue };
            if key.len() >= prefix.len() + suffix.len() && key.starts_with(prefix) && key.ends_with(suffix) {
                let matched = key[prefix.len()..key.len() - suffix.len()].to_string();
                if best.as_ref().is_none_or(|(b, _, _)| prefix.len() > b.find('*').unwrap_or(0)) {
                    best = Some((k, t, matched));
                }
            }
        }
        let (_, t, matched) = best?;
        self.target(t, Some(&matched), pkg_dir, kind)
    }

    /// PACKAGE_TARGET_RESOLVE with the conditions `import`/`require` and `default`.
    fn target(&self, t: &Json, star: Option<&str>, pkg_dir: &Path, kind: Kind) -> Option<PathBuf> {
        match t {
            Json::String(s) => {
                let s = match star {
                    Some(m) => s.replace('*', m),
                    None => s.clone(),
                };
                let rel = s.strip_prefix("./")?;
                let path = normalize(&pkg_dir.join(rel))?;
                (path.starts_with(pkg_dir) && self.is_file(&path)).then_some(path)
            }
            Json::Array(items) => items.iter().find_map(|i| self.target(i, star, pkg_dir, kind)),
            Json::Object(entries) => {
                let wanted = if kind == Kind::Import { "import" } else { "require" };
                entries
                    .iter()
                    .filter(|(k, _)| k == wanted || k == "default")
                    .find_map(|(_, v)| self.target(v, star, pkg_dir, kind))
            }
            Json::Other => None,
        }
    }

    /// The path with every symlink followed by hand, relative to the root; `None`
    /// if a link is absolute or leads above the root.
    pub fn real_path(&self, rel: &Path) -> Option<PathBuf> {
        let mut pending: Vec<PathBuf> = rel.components().map(|c| PathBuf::from(c.as_os_str())).collect();
        pending.reverse();
        let mut done = PathBuf::new();
        let mut links = 0;
        while let Some(part) = pending.pop() {
            let next = normalize(&done.join(&part))?;
            let meta = std::fs::symlink_metadata(self.root.join(&next)).ok()?;
            if !meta.file_type().is_symlink() {
                done = next;
                continue;
            }
            links += 1;
            let target = std::fs::read_link(self.root.join(&next)).ok()?;
            if links > 32 || target.is_absolute() {
                return None;
            }
            for c in target.components().rev() {
                pending.push(PathBuf::from(c.as_os_str()));
            }
        }
        Some(done)
    }
}

/// Lexical normalisation of a bundle-relative path; `None` above the root or if absolute.
pub fn normalize(p: &Path) -> Option<PathBuf> {
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => {
                if !out.pop() {
                    return None;
                }
            }
            Component::Normal(n) => out.push(n),
            Component::RootDir | Component::Prefix(_) => return None,
        }
    }
    Some(out)
}

/// Top-level `import`/`export` statements mean the file is an ES module.
pub fn has_module_syntax(code: &str) -> bool {
    code.lines().map(str::trim_start).any(|l| {
        (l.starts_with("import ") && !l.starts_with("import("))
            || l.starts_with("import{")
            || l.starts_with("import\"")
            || l.starts_with("import'")
            || l.starts_with("import*")
            || l.starts_with("export ")
            || l.starts_with("export{")
            || l.starts_with("export*")
    })
}

#[cfg(test)]
#[path = "resolve_tests.rs"]
mod tests;
