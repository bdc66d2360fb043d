//! deploy/kubernetes/ is checked offline: against the Kubernetes schemas that
//! the `kubernetes-validate` package carries (strict: no unknown field), and
//! against the real binary (every flag and environment variable the manifests
//! give `polyfaas serve` exists), and for what the worker sandbox needs of the
//! pod (non-root, no privilege escalation, RuntimeDefault seccomp).
//! `scripts/fetch-corpus` installs the package, pinned by hash.

mod common;

use std::path::PathBuf;
use std::process::Command;

use common::{bin_dir, repo_root, target_dir};
use serde_json::Value;

fn manifests() -> Vec<PathBuf> {
    let dir = repo_root().join("deploy").join("kubernetes");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("deploy/kubernetes")
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    assert!(files.len() >= 3, "expected the Deployment, Service and Secret: {files:?}");
    files
}

fn python() -> Command {
    let mut cmd = Command::new("python3");
    cmd.env("PYTHONPATH", target_dir().join("corpus").join("kubernetes-validate"));
    cmd
}

#[test]
fn the_manifests_validate_against_the_kubernetes_schemas() {
    let out = python()
        .args(["-m", "kubernetes_validate", "--strict", "-k", "1.31.0"])
        .args(manifests())
        .output()
        .expect("running kubernetes-validate (scripts/fetch-corpus installs it)");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "kubernetes-validate failed:\n{text}");
    for kind in ["deployment/polyfaas", "service/polyfaas", "secret/polyfaas"] {
        assert!(text.contains(&format!("passed for resource {kind}")), "{kind} was not validated:\n{text}");
    }
}

/// Every document of the manifests, as JSON (PyYAML, from the same package set).
fn documents() -> Vec<Value> {
    let script =
        "import json, sys, yaml\nprint(json.dumps([d for f in sys.argv[1:] for d in yaml.safe_load_all(open(f))]))";
    let out = python().args(["-c", script]).args(manifests()).output().expect("python3");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice::<Vec<Value>>(&out.stdout).expect("JSON")
}

#[test]
fn the_deployment_runs_the_real_flags_unprivileged_with_probes() {
    let docs = documents();
    let deployment = docs.iter().find(|d| d["kind"] == "Deployment").expect("a Deployment");
    let pod = &deployment["spec"]["template"]["spec"];
    let container = &pod["containers"][0];

    assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
    assert_eq!(pod["securityContext"]["seccompProfile"]["type"], "RuntimeDefault");
    assert_eq!(container["securityContext"]["allowPrivilegeEscalation"], false);
    assert_eq!(container["readinessProbe"]["httpGet"]["path"], "/readyz");
    assert_eq!(container["livenessProbe"]["httpGet"]["path"], "/healthz");
    assert!(container["resources"]["limits"]["memory"].is_string(), "resource limits");

    // The store URL and the token come from the Secret, never from the manifest.
    let env = container["env"].as_array().expect("env");
    let store = env.iter().find(|e| e["name"] == "POLYFAAS_STORE").expect("POLYFAAS_STORE");
    assert_eq!(store["valueFrom"]["secretKeyRef"]["name"], "polyfaas");
    let secret = docs.iter().find(|d| d["kind"] == "Secret").expect("a Secret");
    assert!(secret["stringData"]["store-url"].as_str().is_some_and(|u| u.starts_with("postgres://")));

    // What the manifest hands `polyfaas serve` is what the binary accepts.
    let help = Command::new(bin_dir().join("polyfaas")).args(["serve", "--help"]).output().expect("polyfaas");
    let help = String::from_utf8_lossy(&help.stdout);
    let args: Vec<&str> = container["args"].as_array().expect("args").iter().filter_map(Value::as_str).collect();
    assert_eq!(args.first(), Some(&"serve"));
    for arg in &args[1..] {
        let flag = arg.split('=').next().unwrap_or(arg);
        assert!(help.contains(&format!("{flag} ")), "`polyfaas serve` has no {flag}");
    }
    for var in env.iter().filter_map(|e| e["name"].as_str()) {
        assert!(help.contains(&format!("env: {var}")), "`polyfaas serve` reads no {var}");
    }
    let port = container["ports"][0]["containerPort"].as_u64().expect("port");
    assert!(args.contains(&format!("--listen=0.0.0.0:{port}").as_str()), "listens on the container port");
}
