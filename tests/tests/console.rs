//! The operator console, end to end in a real browser: `tests/console/console.mjs`
//! drives Debian's headless Chromium (through `playwright-core`, installed by
//! `npm ci` in `tests/console`) against a real server started here: sign-in
//! (a wrong token refused), deploy through the file input, invoke, the live
//! logs, rollback, a worker restart changing its pid, a chart with data, phone
//! width, keyboard reach, and a function page (sandboxed, on the console's
//! origin) failing to read the console's token. Screenshots of each view go to
//! `$CARGO_TARGET_DIR/console-screenshots`.

mod common;

use std::path::Path;
use std::process::Command;

use common::{Server, dir_bundle_with, repo_root, target_dir, zip};

const TOKEN: &str = "console-test-token-5f2a";

/// A JS function that answers an HTML page whose script tries to read the
/// console's token (its tab's sessionStorage and localStorage, and a console it
/// opens) and reports what it found to `{self}/report`, which logs it.
fn evil_bundle(sandboxed: bool) -> Vec<u8> {
    let page = r#"<!doctype html><title>evil</title><p id="out">waiting</p><script>
(async () => {
  const key = "polyfaas.console.token";
  const found = [];
  try { found.push("own-session=" + sessionStorage.getItem(key)); } catch (e) { found.push("own-session-error"); }
  try { found.push("own-local=" + JSON.stringify(Object.assign({}, localStorage))); } catch (e) { found.push("own-local-error"); }
  let w = null;
  try { w = window.open("/console"); } catch (e) { found.push("open-error"); }
  await new Promise((r) => setTimeout(r, 1500));
  try { found.push("opened-session=" + w.sessionStorage.getItem(key)); } catch (e) { found.push("opened-session-error"); }
  try { found.push("opened-dom=" + w.document.body.innerText.slice(0, 200)); } catch (e) { found.push("opened-dom-error"); }
  const d = found.join(";");
  document.getElementById("out").textContent = d;
  await fetch(location.pathname.replace(/\/$/, "") + "/report?d=" + encodeURIComponent(d));
})();
</script>"#;
    let handler = format!(
        "const PAGE = {};\nfunction handler(ctx) {{\n  if (ctx.request().path() === \"/report\") {{\n    console.log(\"report \" + ctx.request().getParam(\"d\"));\n    return \"noted\";\n  }}\n  ctx.response().putHeader(\"content-type\", \"text/html; charset=utf-8\").end(PAGE);\n}}\nhandler\n",
        serde_json::Value::String(page.to_string())
    );
    let metadata = if sandboxed {
        r#"{"language":"js","entrypointFile":"handler.js"}"#
    } else {
        r#"{"language":"js","entrypointFile":"handler.js","sandboxResponses":false}"#
    };
    zip(&[("metadata.json", metadata.as_bytes()), ("handler.js", handler.as_bytes())])
}

fn npm_ci(dir: &Path) {
    if dir.join("node_modules").join("playwright-core").is_dir() {
        return;
    }
    let status = Command::new("npm")
        .args(["ci", "--ignore-scripts", "--no-audit", "--no-fund"])
        .current_dir(dir)
        .status()
        .expect("running npm ci in tests/console (scripts/setup installs npm)");
    assert!(status.success(), "npm ci in tests/console failed");
}

#[test]
fn the_console_deploys_invokes_tails_rolls_back_restarts_and_charts_in_chromium() {
    assert!(
        Path::new("/usr/bin/chromium").is_file(),
        "Debian's chromium is missing: scripts/test installs it (apt_install chromium)"
    );
    let console_dir = repo_root().join("tests").join("console");
    npm_ci(&console_dir);

    let data = tempfile::tempdir().expect("temp dir");
    let server = Server::start_in(data.path(), &["--workers", "4"], &[("POLYFAAS_ADMIN_TOKEN", TOKEN)]);
    let bundles = tempfile::tempdir().expect("temp dir");
    let (evil, evil_open) = (bundles.path().join("evil.zip"), bundles.path().join("evil-open.zip"));
    std::fs::write(&evil, evil_bundle(true)).expect("writing evil.zip");
    std::fs::write(&evil_open, evil_bundle(false)).expect("writing evil-open.zip");
    let v1 = bundles.path().join("hello-v1.zip");
    let v2 = bundles.path().join("hello-v2.zip");
    std::fs::write(&v1, dir_bundle_with("hello-js", None)).expect("writing v1");
    std::fs::write(
        &v2,
        dir_bundle_with("hello-js", Some(r#"{"language":"js","entrypointFile":"handler.js","timeoutMs":5000}"#)),
    )
    .expect("writing v2");
    // A folder to deploy through the folder input, with a `.git` the console leaves out.
    let folder = bundles.path().join("hello-folder");
    std::fs::create_dir_all(folder.join(".git")).expect("folder");
    std::fs::create_dir_all(folder.join("lib")).expect("folder");
    for file in ["metadata.json", "handler.js", "lib/greet.js"] {
        std::fs::copy(repo_root().join("bundles").join("hello-js").join(file), folder.join(file)).expect("copy");
    }
    std::fs::write(folder.join(".git").join("HEAD"), "ref: refs/heads/main\n").expect("writing .git/HEAD");
    let shots = target_dir().join("console-screenshots");

    let out = Command::new("node")
        .arg(console_dir.join("console.mjs"))
        .current_dir(&console_dir)
        .env("CONSOLE_URL", server.url(""))
        .env("CONSOLE_TOKEN", TOKEN)
        .env("BUNDLE_V1", &v1)
        .env("BUNDLE_V2", &v2)
        .env("FOLDER", &folder)
        .env("EVIL", &evil)
        .env("EVIL_OPEN", &evil_open)
        .env("SHOTS", &shots)
        .output()
        .expect("running node");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "the browser run failed:\n{stdout}\n{stderr}\nserver warnings:\n{}",
        warnings(&server.logs())
    );
    assert!(stdout.contains("console: all steps passed"), "{stdout}");
    for view in ["login-refused", "functions", "invoke", "function", "workers", "charts", "functions-phone"] {
        assert!(shots.join(format!("{view}.png")).is_file(), "screenshot of {view}");
    }
}

fn warnings(log: &str) -> String {
    log.lines().filter(|l| l.contains(" WARN ") || l.contains(" ERROR ")).collect::<Vec<_>>().join("\n")
}

/// The admin listener's address, from the server's log.
fn admin_addr(server: &Server) -> String {
    let logs = server.logs();
    let line = logs.lines().find(|l| l.contains("admin listener http://")).expect("the admin listener is logged");
    line.split("admin listener http://").nth(1).and_then(|r| r.split_whitespace().next()).expect("address").to_string()
}

#[test]
fn the_console_is_on_the_admin_listener_only_with_a_strict_policy_and_no_cookie() {
    let server = Server::start(&["--admin-listen", "127.0.0.1:0", "--admin-token", TOKEN]);
    let admin = admin_addr(&server);
    for path in ["/console", "/console/main.js", "/console/vendor/uPlot.iife.min.js"] {
        let main = server.get(path);
        assert_eq!(
            (main.status, main.json()["code"].as_str()),
            (404, Some("not_found")),
            "{path} on the main listener"
        );
        let r = common::call(&format!("http://{admin}{path}"), "GET", &[], b"");
        assert_eq!(r.status, 200, "{path} on the admin listener");
        let policy = r.header("content-security-policy").expect("a policy");
        for directive in ["default-src 'self'", "script-src 'self'", "frame-ancestors 'none'", "object-src 'none'"] {
            assert!(policy.contains(directive), "{path}: {policy}");
        }
        assert!(!policy.contains("unsafe-inline") && !policy.contains("http"), "{path}: {policy}");
        assert_eq!(r.header("x-frame-options"), Some("DENY"));
        assert_eq!(r.header("x-content-type-options"), Some("nosniff"));
        assert!(r.header("set-cookie").is_none());
    }
    let page = common::call(&format!("http://{admin}/console"), "GET", &[], b"").text();
    assert!(!page.contains("<script>") && !page.contains(" style="), "no inline script or style: {page}");
    assert!(!page.contains("http://") && !page.contains("https://"), "nothing from another origin");
    let missing = common::call(&format!("http://{admin}/console/../admin/workers"), "GET", &[], b"");
    assert_ne!(missing.status, 200, "no path escapes the embedded files");
    let unknown = common::call(&format!("http://{admin}/console/secret.txt"), "GET", &[], b"");
    assert_eq!((unknown.status, unknown.json()["code"].as_str()), (404, Some("not_found")));
}

#[test]
fn admin_series_counts_invocations_per_function_and_forgets_a_deleted_one() {
    let server = Server::start(&["--admin-token", TOKEN]);
    assert_eq!(server.deploy("counted", &dir_bundle_with("hello-js", None)).status, 201);
    for _ in 0..3 {
        assert_eq!(server.invoke("counted", &serde_json::json!({})).status, 200);
    }
    assert_eq!(server.get("/admin/series").status, 401, "the series are admin data");
    let series = server.manage("GET", "/admin/series", &[], b"").json();
    assert_eq!(series["bucketSeconds"], 5);
    assert_eq!(series["windowSeconds"], 900);
    let sum =
        |v: &serde_json::Value| v.as_array().expect("array").iter().map(|n| n.as_u64().expect("count")).sum::<u64>();
    assert_eq!(sum(&series["functions"]["counted"]["invocations"]), 3, "{series}");
    assert_eq!(sum(&series["total"]["invocations"]), 3, "{series}");
    assert_eq!(sum(&series["functions"]["counted"]["errors"]), 0, "{series}");
    let only = server.manage("GET", "/admin/series?function=counted", &[], b"").json();
    assert_eq!(only["functions"].as_object().map(serde_json::Map::len), Some(1));
    let bad = server.manage("GET", "/admin/series?function=Not%20A%20Name", &[], b"");
    assert_eq!((bad.status, bad.json()["code"].as_str()), (400, Some("invalid_name")));
    assert_eq!(server.manage("DELETE", "/api/v1/functions/counted", &[], b"").status, 200);
    let after = server.manage("GET", "/admin/series", &[], b"").json();
    assert!(after["functions"].get("counted").is_none(), "{after}");
}

/// A handler that answers the request's headers, as it got them.
fn echo_headers_bundle(metadata_extra: &str) -> Vec<u8> {
    let metadata = format!(r#"{{"language":"js","entrypointFile":"h.js"{metadata_extra}}}"#);
    let source = "function handler(ctx) { return { headers: ctx.request().headers(), body: ctx.body() }; }\nhandler\n";
    zip(&[("metadata.json", metadata.as_bytes()), ("h.js", source.as_bytes())])
}

#[test]
fn the_console_invokes_through_the_admin_listener_without_handing_the_token_to_the_function() {
    let server = Server::start(&["--admin-listen", "127.0.0.1:0", "--admin-token", TOKEN]);
    let admin = admin_addr(&server);
    let bearer = format!("Bearer {TOKEN}");
    let deployed = common::call(
        &format!("http://{admin}/api/v1/functions/echo"),
        "PUT",
        &[("authorization", &bearer), ("content-type", "application/zip")],
        &echo_headers_bundle(r#","sandboxResponses":false"#),
    );
    assert_eq!(deployed.status, 201, "{}", deployed.text());
    let url = format!("http://{admin}/admin/invoke/echo/a/b?x=1");

    // Without the token, or with a wrong one, nothing runs.
    let anonymous = common::call(&url, "POST", &[], b"{}");
    assert_eq!(anonymous.status, 401, "{}", anonymous.text());
    let wrong = common::call(&url, "POST", &[("authorization", "Bearer nope")], b"{}");
    assert_eq!(wrong.status, 403, "{}", wrong.text());

    // With it, the function runs, sees the operator's headers and body but not the
    // token, and its answer is sandboxed although the function opted out.
    let r = common::call(&url, "POST", &[("authorization", &bearer), ("x-operator", "yes")], br#"{"k":1}"#);
    assert_eq!(r.status, 200, "{}", r.text());
    let seen = r.json();
    let headers = seen["headers"].to_string();
    assert!(headers.contains("x-operator") && !headers.to_lowercase().contains("authorization"), "{headers}");
    assert!(!r.text().contains(TOKEN), "the token reached the function: {}", r.text());
    assert_eq!(seen["body"], r#"{"k":1}"#);
    assert!(r.header("content-security-policy").is_some_and(|p| p.contains("sandbox")), "sandboxed");
    assert!(r.header("x-polyfaas-worker-pid").is_some());
    let main = r.header("x-polyfaas-main-listener").expect("where the curl line points");
    assert_eq!(format!("http://{main}/"), server.url("/"), "the main listener's address");

    // The main listener serves no /admin/invoke; /fn there answers as before, unsandboxed.
    let on_main = server.call("POST", "/admin/invoke/echo", &[("authorization", &bearer)], b"{}");
    assert_eq!((on_main.status, on_main.json()["code"].as_str()), (404, Some("not_found")));
    let public = server.call("POST", "/fn/echo", &[("authorization", "Basic dXNlcg==")], b"{}");
    assert_eq!(public.status, 200, "{}", public.text());
    assert!(
        public.json()["headers"].to_string().contains("Basic dXNlcg=="),
        "a public caller's header is the function's"
    );
    assert!(public.header("content-security-policy").is_none());
}
