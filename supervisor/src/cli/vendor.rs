//! Vendoring what a bundle folder declares, the way its ecosystem does, before
//! `polyfaas deploy` zips it: `requirements.txt` with pip (wheels only, pure
//! Python only, into the bundle's root, which is the handler's `sys.path`) and
//! `package.json` with npm (`node_modules` beside the code, no dev dependencies).
//!
//! Owns the staging copy (a temporary folder, removed when [`Staging`] drops) and
//! the checks on what the package managers installed. It must never modify the
//! user's folder, never run a package's own code (pip takes wheels only, so no
//! `setup.py` runs; npm runs with `--ignore-scripts`), and never ship native code
//! the worker cannot load without saying which package brought it.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{Context, Result, bail};

/// The wheel tags of pure-Python code: any interpreter, no ABI, any platform.
fn pure_tag(tag: &str) -> bool {
    let mut parts = tag.split('-');
    let (Some(python), Some(abi), Some(platform), None) = (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return false;
    };
    python.split('.').all(|p| p == "py3" || p == "py2") && abi == "none" && platform == "any"
}

/// File endings of native code a worker cannot load.
const NATIVE: [&str; 4] = [".so", ".pyd", ".dylib", ".node"];

/// A temporary folder, removed with everything in it when dropped.
pub struct Staging {
    root: PathBuf,
}

impl Staging {
    pub fn new() -> Result<Self> {
        let unique = format!(
            "polyfaas-deploy-{}-{}",
            std::process::id(),
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0)
        );
        let root = std::env::temp_dir().join(unique);
        std::fs::create_dir(&root).with_context(|| format!("creating the staging folder {}", root.display()))?;
        Ok(Self { root })
    }

    /// Where the copy of the bundle goes.
    pub fn bundle(&self) -> PathBuf {
        self.root.join("bundle")
    }

    fn scratch(&self, name: &str) -> PathBuf {
        self.root.join(name)
    }
}

impl Drop for Staging {
    fn drop(&mut self) {
        if let Err(e) = std::fs::remove_dir_all(&self.root) {
            eprintln!("warning: cannot remove the staging folder {}: {e}", self.root.display());
        }
    }
}

/// Runs a package manager; its output is shown only when it fails.
fn run(mut command: Command, what: &str, install_hint: &str) -> Result<()> {
    let output = match command.stdin(Stdio::null()).output() {
        Ok(output) => output,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            bail!(
                "{what} is needed to vendor this folder's dependencies, and it is not installed: {install_hint}, or deploy with --no-vendor"
            )
        }
        Err(e) => return Err(e).with_context(|| format!("running {what}")),
    };
    if !output.status.success() {
        let mut text = String::from_utf8_lossy(&output.stderr).into_owned();
        text.push_str(&String::from_utf8_lossy(&output.stdout));
        bail!("{what} failed ({}):\n{}", output.status, text.trim_end());
    }
    Ok(())
}

/// Installs `requirements.txt` of the staged bundle into the bundle's root.
pub fn python(staging: &Staging) -> Result<()> {
    let bundle = staging.bundle();
    let hint = "install pip (Debian: apt install python3-pip)";
    // `python3 -m pip` rather than a `pip` on the PATH: the one that belongs to python3.
    let mut probe = Command::new("python3");
    probe.args(["-m", "pip", "--version"]);
    run(probe, "pip (python3 -m pip)", hint)?;
    let site = staging.scratch("site");
    let mut pip = Command::new("python3");
    pip.current_dir(&bundle)
        .args(["-m", "pip", "install", "--target"])
        .arg(&site)
        .args(["-r", "requirements.txt", "--only-binary=:all:", "--no-compile", "--disable-pip-version-check"])
        .args(["--no-input", "--quiet"]);
    run(pip, "pip install -r requirements.txt", hint)?;
    check_wheels(&site)?;
    // Console scripts are for a shell; a handler imports modules.
    let _ = std::fs::remove_dir_all(site.join("bin"));
    merge(&site, &bundle)
}

/// Refuses what is not pure Python: a wheel with another tag, or a native file,
/// naming the distribution that brought it.
fn check_wheels(site: &Path) -> Result<()> {
    let mut refused = BTreeSet::new();
    let mut owners: Vec<(String, String)> = Vec::new();
    for entry in std::fs::read_dir(site).with_context(|| format!("reading {}", site.display()))? {
        let path = entry?.path();
        let Some(dir) = path.file_name().and_then(|n| n.to_str()).and_then(|n| n.strip_suffix(".dist-info")) else {
            continue;
        };
        let dist = dir.replacen('-', " ", 1);
        let wheel = std::fs::read_to_string(path.join("WHEEL")).unwrap_or_default();
        let tags: Vec<&str> = wheel.lines().filter_map(|l| l.strip_prefix("Tag:")).map(str::trim).collect();
        if tags.is_empty() || !tags.iter().all(|t| pure_tag(t)) {
            refused.insert(format!("{dist} (wheel tagged {})", tags.join(", ")));
        }
        for line in std::fs::read_to_string(path.join("RECORD")).unwrap_or_default().lines() {
            if let Some(file) = line.split(',').next() {
                owners.push((file.to_string(), dist.clone()));
            }
        }
    }
    for file in files_under(site)? {
        if NATIVE.iter().any(|end| file.ends_with(end)) {
            let owner = owners.iter().find(|(f, _)| *f == file).map_or("an unknown package", |(_, d)| d.as_str());
            refused.insert(format!("{owner} (native file {file})"));
        }
    }
    if !refused.is_empty() {
        bail!(
            "requirements.txt: not pure Python: {}. polyfaas runs Python on RustPython, which loads no C \
             extensions; only wheels tagged py3-none-any (or py2.py3-none-any) can be deployed. Use a \
             pure-Python alternative, or deploy with --no-vendor",
            refused.into_iter().collect::<Vec<_>>().join("; ")
        );
    }
    Ok(())
}

/// Installs `package.json`'s dependencies (not its dev dependencies) into the
/// staged bundle's `node_modules`, running no package's scripts.
pub fn node(staging: &Staging) -> Result<()> {
    let bundle = staging.bundle();
    let mut npm = Command::new("npm");
    npm.current_dir(&bundle).args([
        "install",
        "--omit=dev",
        "--ignore-scripts",
        "--no-audit",
        "--no-fund",
        "--loglevel=error",
    ]);
    run(npm, "npm install", "install npm (Debian: apt install npm)")?;
    // Links to command-line tools: nothing a handler requires, and links are not
    // bundle entries.
    let _ = std::fs::remove_dir_all(bundle.join("node_modules").join(".bin"));
    Ok(())
}

/// Every file under `root`, as `/`-separated relative paths (links not followed).
fn files_under(root: &Path) -> Result<Vec<String>> {
    let mut files = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).with_context(|| format!("reading {}", dir.display()))? {
            let entry = entry?;
            if entry.file_type()?.is_dir() {
                stack.push(entry.path());
            } else {
                files.push(entry.path().strip_prefix(root)?.to_string_lossy().replace('\\', "/"));
            }
        }
    }
    Ok(files)
}

/// Moves what pip installed into the bundle's root, refusing to replace a file
/// of the bundle's own.
fn merge(site: &Path, bundle: &Path) -> Result<()> {
    for entry in std::fs::read_dir(site)? {
        let entry = entry?;
        let target = bundle.join(entry.file_name());
        if target.exists() {
            bail!(
                "requirements.txt installs {}, which the folder has already: rename the folder's own",
                entry.file_name().to_string_lossy()
            );
        }
        std::fs::rename(entry.path(), &target).with_context(|| format!("moving {}", target.display()))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::pure_tag;

    #[test]
    fn pure_python_tags() {
        assert!(pure_tag("py3-none-any"));
        assert!(pure_tag("py2.py3-none-any"));
        assert!(pure_tag("py2-none-any"));
        assert!(!pure_tag("cp311-cp311-manylinux_2_17_x86_64"));
        assert!(!pure_tag("cp311-abi3-any"));
        assert!(!pure_tag("py3-none-win_amd64"));
        assert!(!pure_tag("py3-none"));
    }
}
