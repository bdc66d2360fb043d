//! Several nodes, one PostgreSQL store: a real PostgreSQL (started in a temp
//! dir), real `polyfaas` nodes on ephemeral ports, each with its own data dir.
//! Propagation is asserted with a generous bound (the 1 s target is measured by
//! `bench/run`, never here).

mod common;

use std::time::Duration;

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use common::attack::script_bundle;
use common::nginx::{Nginx, free_port};
use common::postgres::Postgres;
use common::{Server, call, repo_root, wait_until, wasm_bundle};
use serde_json::{Value, json};

/// How long a change may take to reach another node in these tests.
const PROPAGATION: Duration = Duration::from_secs(20);

fn node(pg: &Postgres) -> Server {
    Server::start(&["--store", &pg.url(), "--workers", "4"])
}

/// A JS function answering `{"v": <version tag>}`.
fn tagged(tag: u32) -> Vec<u8> {
    script_bundle("js", "handler.js", &format!("function handler(ctx) {{ return {{ v: {tag} }}; }}\nhandler\n"))
}

fn answer(server: &Server, name: &str) -> Option<Value> {
    let r = server.invoke(name, &json!({}));
    (r.status == 200).then(|| r.json())
}

fn serves(server: &Server, name: &str, tag: u32) -> bool {
    answer(server, name).is_some_and(|v| v["v"] == tag)
}

#[test]
fn deploys_rollbacks_and_deletes_on_one_node_reach_every_node() {
    let pg = Postgres::start();
    let (a, b) = (node(&pg), node(&pg));

    let r = a.deploy("greet", &tagged(1));
    assert_eq!(r.status, 201, "{}", r.text());
    assert_eq!(r.json()["version"], 1);
    assert!(serves(&a, "greet", 1), "the node that took the deploy serves it at once");
    assert!(wait_until(PROPAGATION, || serves(&b, "greet", 1)), "B never served greet v1: {}", b.logs());

    // A WASM module is compiled again on every node, from the stored bundle.
    let r = b.deploy("hw", &wasm_bundle("hello-wasm", None));
    assert_eq!(r.status, 201, "{}", r.text());
    assert!(wait_until(PROPAGATION, || a.invoke("hw", &json!({})).status == 200), "A never served hw: {}", a.logs());
    let from_a = a.call("POST", "/fn/hw", &[], b"").text();
    let from_b = b.call("POST", "/fn/hw", &[], b"").text();
    assert_eq!(from_a, from_b);

    let r = b.deploy("greet", &tagged(2));
    assert_eq!((r.status, r.json()["version"].as_u64()), (201, Some(2)), "{}", r.text());
    assert!(wait_until(PROPAGATION, || serves(&a, "greet", 2)), "A never served greet v2: {}", a.logs());

    let r = a.manage("POST", "/api/v1/functions/greet/rollback", &[], b"");
    assert_eq!((r.status, r.json()["version"].as_u64()), (200, Some(1)), "{}", r.text());
    assert!(serves(&a, "greet", 1));
    assert!(wait_until(PROPAGATION, || serves(&b, "greet", 1)), "B never rolled back: {}", b.logs());

    let r = b.manage("DELETE", "/api/v1/functions/hw", &[], b"");
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(wait_until(PROPAGATION, || a.invoke("hw", &json!({})).status == 404), "A still serves hw");

    // A node started later holds everything before it serves.
    let c = node(&pg);
    assert!(serves(&c, "greet", 1), "a new node serves the cluster's current version at once");
    let described = c.manage("GET", "/api/v1/functions/greet", &[], b"").json();
    let versions: Vec<u64> =
        described["versions"].as_array().expect("versions").iter().filter_map(|v| v["version"].as_u64()).collect();
    assert_eq!((described["version"].as_u64(), versions), (Some(1), vec![1, 2]), "{described}");
    assert_eq!(c.invoke("hw", &json!({})).status, 404);

    // The database's history names what each node did.
    let history = pg.sql("SELECT string_agg(action || ':' || coalesce(version::text, '-'), ',' ORDER BY id) FROM history WHERE name = 'greet'");
    assert_eq!(history, "deploy:1,deploy:2,rollback:1");
}

#[test]
fn nodes_list_each_other_by_heartbeat_and_the_store_url_leaves_the_environment() {
    let pg = Postgres::start();
    let tmp = tempfile::tempdir().expect("tmp");
    // The URL through the environment, as the Kubernetes manifest gives it.
    let env = [("POLYFAAS_STORE", pg.url()), ("POLYFAAS_ADMIN_TOKEN", "t0ken".to_string())];
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let a = Server::start_in(&tmp.path().join("a"), &[], &env);
    let b = Server::start_in(&tmp.path().join("b"), &[], &env);
    let environ = std::fs::read(format!("/proc/{}/environ", a.pid())).expect("environ");
    assert!(
        !String::from_utf8_lossy(&environ).contains("postgres://"),
        "the store URL is still in /proc/<pid>/environ"
    );

    let listed = |server: &Server| server.manage("GET", "/admin/nodes", &[], b"").json();
    assert!(
        wait_until(PROPAGATION, || listed(&a)["nodes"].as_array().is_some_and(|n| n.len() == 2)),
        "A does not list both nodes: {}",
        listed(&a)
    );
    let nodes = listed(&a);
    assert_eq!(nodes["store"], "postgres");
    let entries = nodes["nodes"].as_array().expect("nodes");
    for (server, entry) in [&a, &b].iter().map(|s| {
        let address = s.url("").trim_start_matches("http://").to_string();
        (s, entries.iter().find(|e| e["address"] == address.as_str()).cloned().expect("listed by address"))
    }) {
        assert_eq!(entry["alive"], true, "{entry}");
        assert_eq!(entry["self"], std::ptr::eq(*server, &a), "{entry}");
    }
    assert_eq!(a.get("/admin/nodes").status, 401, "the node list is for the admin token");
}

#[test]
fn two_nodes_deploying_one_function_at_once_number_versions_without_gaps() {
    let pg = Postgres::start();
    let (a, b) = (node(&pg), node(&pg));
    let versions = std::thread::scope(|s| {
        let runs: Vec<_> = [&a, &b, &a, &b]
            .into_iter()
            .enumerate()
            .map(|(i, server)| {
                s.spawn(move || {
                    (0..3)
                        .map(|j| {
                            let r = server.deploy("race", &tagged((i * 10 + j) as u32));
                            assert_eq!(r.status, 201, "{}", r.text());
                            r.json()["version"].as_u64().expect("version")
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        runs.into_iter().flat_map(|h| h.join().expect("deploy thread")).collect::<Vec<_>>()
    });
    let mut sorted = versions.clone();
    sorted.sort_unstable();
    assert_eq!(sorted, (1..=12).collect::<Vec<u64>>(), "{versions:?}");
    // Both nodes end on the same current version (the last committed).
    let current = pg.sql("SELECT current_version FROM functions WHERE name = 'race'");
    assert_eq!(current, "12");
    for server in [&a, &b] {
        assert!(
            wait_until(PROPAGATION, || server.manage("GET", "/api/v1/functions/race", &[], b"").json()["version"]
                == 12),
            "a node did not settle on version 12"
        );
    }
}

#[test]
fn with_the_database_down_nodes_keep_serving_and_refuse_changes_then_catch_up() {
    let mut pg = Postgres::start();
    let (a, b) = (node(&pg), node(&pg));
    assert_eq!(a.deploy("steady", &tagged(1)).status, 201);
    assert!(wait_until(PROPAGATION, || serves(&b, "steady", 1)));

    pg.stop();
    for _ in 0..20 {
        assert!(serves(&a, "steady", 1) && serves(&b, "steady", 1), "an invocation failed with the database down");
    }
    let r = a.deploy("steady", &tagged(2));
    assert_eq!(r.status, 503, "{}", r.text());
    assert_eq!(r.json()["code"], "store_unavailable", "{}", r.text());
    assert_eq!(b.manage("POST", "/api/v1/functions/steady/rollback?version=1", &[], b"").status, 503);
    assert_eq!(b.manage("DELETE", "/api/v1/functions/steady", &[], b"").status, 503);
    assert!(serves(&a, "steady", 1), "a refused deploy changed nothing");
    // Readiness is the pool's (warm workers), never the database's.
    assert!(
        wait_until(PROPAGATION, || a.get("/readyz").status == 200),
        "a node is not ready while the database is away"
    );

    pg.restart();
    assert!(
        wait_until(PROPAGATION, || a.deploy("steady", &tagged(2)).status == 201),
        "deploys never came back: {}",
        a.logs()
    );
    assert!(wait_until(PROPAGATION, || serves(&b, "steady", 2)), "B never caught up: {}", b.logs());
    assert_eq!(
        pg.sql("SELECT string_agg(version::text, ',' ORDER BY version) FROM versions WHERE name = 'steady'"),
        "1,2"
    );
}

/// A JS function that logs `said <m>` (and, asked to, a NUL byte) on every call.
fn talker() -> Vec<u8> {
    script_bundle(
        "js",
        "handler.js",
        "function handler(ctx) {\n  const m = ctx.request().getParam(\"m\");\n  console.log(\"said \" + m + (m === \"nul\" ? \"\\u0000!\" : \"\"));\n  return \"ok\";\n}\nhandler\n",
    )
}

fn logs_page(server: &Server, query: &str) -> Value {
    let r = server.manage("GET", &format!("/api/v1/functions/say/logs{query}"), &[], b"");
    assert_eq!(r.status, 200, "{}", r.text());
    r.json()
}

fn said(page: &Value) -> Vec<(String, String)> {
    page["logs"]
        .as_array()
        .expect("logs")
        .iter()
        .map(|e| {
            (e["text"].as_str().unwrap_or("").trim_end().to_string(), e["node"].as_str().unwrap_or("").to_string())
        })
        .collect()
}

fn count_rows(pg: &Postgres) -> u64 {
    pg.sql("SELECT count(*) FROM invocation_logs WHERE function = 'say'").parse().expect("a count")
}

#[test]
fn every_node_reads_the_whole_clusters_logs_through_one_cursor() {
    let mut pg = Postgres::start();
    let (a, b) = (node(&pg), node(&pg));
    let node_of = |s: &Server| s.url("").trim_start_matches("http://").to_string();
    assert_eq!(a.deploy("say", &talker()).status, 201);
    assert!(wait_until(PROPAGATION, || b.invoke("say", &json!({})).status == 200), "B never served say");
    // Whatever that readiness probe logged, from here on only new entries count.
    assert!(wait_until(PROPAGATION, || count_rows(&pg) >= 1), "B's entry was never shipped");
    let start = logs_page(&b, "");
    assert_eq!(start["cluster"], true);
    let cursor = start["cursor"].as_str().expect("cursor").to_string();
    assert!(cursor.starts_with("pg-"), "{cursor}");

    // A reader long-polling on B wakes for an invocation on A.
    let woke = std::thread::scope(|s| {
        let reader = s.spawn(|| logs_page(&b, &format!("?after={cursor}&wait=25000")));
        std::thread::sleep(Duration::from_millis(300));
        assert_eq!(a.call("GET", "/fn/say?m=from-a", &[], b"").status, 200);
        reader.join().expect("reader")
    });
    let got = said(&woke);
    assert_eq!(got.len(), 1, "{woke}");
    assert_eq!(got[0].0, "said from-a");
    assert!(got[0].1.ends_with(&node_of(&a)), "the entry names node A: {woke}");

    // B's own invocations, a NUL byte included, land in the same sequence.
    assert_eq!(b.call("GET", "/fn/say?m=nul", &[], b"").status, 200);
    assert_eq!(b.call("GET", "/fn/say?m=from-b", &[], b"").status, 200);
    let after_a = woke["cursor"].as_str().expect("cursor").to_string();
    assert!(
        wait_until(PROPAGATION, || said(&logs_page(&a, &format!("?after={after_a}"))).len() == 2),
        "A never saw B's entries: {}",
        logs_page(&a, "")
    );
    let page = logs_page(&a, &format!("?after={after_a}"));
    let got = said(&page);
    assert_eq!(got[0].0, "said nul\u{FFFD}!", "NUL is replaced, not refused: {page}");
    assert_eq!(got[1].0, "said from-b");
    assert!(got.iter().all(|(_, n)| n.ends_with(&node_of(&b))), "{page}");
    let seqs: Vec<u64> = page["logs"].as_array().expect("logs").iter().filter_map(|e| e["seq"].as_u64()).collect();
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "{seqs:?}");
    // The same page, read on either node.
    assert_eq!(said(&logs_page(&b, &format!("?after={after_a}"))), got);

    // A cursor of one node's memory means nothing to the cluster.
    let r = a.manage("GET", "/api/v1/functions/say/logs?after=0000abcd-1", &[], b"");
    assert_eq!((r.status, r.json()["code"].as_str()), (400, Some("invalid_cursor")), "{}", r.text());

    // Retention: the newest 50 per function, whichever node ran them.
    for i in 0..30 {
        assert_eq!(a.call("GET", &format!("/fn/say?m=a{i}"), &[], b"").status, 200);
        assert_eq!(b.call("GET", &format!("/fn/say?m=b{i}"), &[], b"").status, 200);
    }
    assert!(
        wait_until(PROPAGATION, || {
            let got = said(&logs_page(&a, ""));
            ["said a29", "said b29"].iter().all(|last| got.iter().any(|(t, _)| t == last))
        }),
        "the last entries never arrived"
    );
    assert_eq!(count_rows(&pg), 50);
    assert_eq!(said(&logs_page(&b, "?limit=50")).len(), 50);

    // The database away: invocations still answer, their logs wait on their
    // node and arrive once it is back; reading the cluster's logs is refused.
    pg.stop();
    for i in 0..3 {
        assert_eq!(a.call("GET", &format!("/fn/say?m=outage{i}"), &[], b"").status, 200);
    }
    let r = a.manage("GET", "/api/v1/functions/say/logs", &[], b"");
    assert_eq!((r.status, r.json()["code"].as_str()), (503, Some("store_unavailable")), "{}", r.text());
    pg.restart();
    let outage = |page: &Value| said(page).iter().filter(|(t, _)| t.starts_with("said outage")).count();
    assert!(
        wait_until(PROPAGATION, || {
            b.manage("GET", "/api/v1/functions/say/logs", &[], b"").status == 200 && outage(&logs_page(&b, "")) == 3
        }),
        "the entries logged during the outage never arrived: {}",
        a.logs()
    );

    // Deleting the function deletes its logs.
    assert_eq!(a.manage("DELETE", "/api/v1/functions/say", &[], b"").status, 200);
    assert_eq!(count_rows(&pg), 0);
}

/// The shipped `deploy/nginx/polyfaas.conf` in front of three nodes, its
/// upstream and listen addresses rewritten to this test's ports.
fn balancer(nodes: &[&Server]) -> Nginx {
    let mut site = std::fs::read_to_string(repo_root().join("deploy").join("nginx").join("polyfaas.conf"))
        .expect("deploy/nginx/polyfaas.conf");
    for (i, node) in nodes.iter().enumerate() {
        let shipped = format!("127.0.0.1:{}", 8081 + i);
        assert!(site.contains(&shipped), "the shipped upstream lists {shipped}");
        site = site.replace(&shipped, node.url("").trim_start_matches("http://"));
    }
    let port = free_port();
    assert!(site.contains("listen 8080;"));
    Nginx::start(&site.replace("listen 8080;", &format!("listen 127.0.0.1:{port};")), port)
}

#[test]
fn killing_a_node_under_load_behind_nginx_fails_only_what_was_in_flight_on_it() {
    let pg = Postgres::start();
    let mut nodes = vec![node(&pg), node(&pg), node(&pg)];
    let lb = balancer(&nodes.iter().collect::<Vec<_>>());

    // Managed through the balancer too: any node takes the deploy.
    let r = call(&lb.url("/api/v1/functions/greet"), "PUT", &[("content-type", "application/zip")], &tagged(7));
    assert_eq!(r.status, 201, "{}", r.text());
    for n in &nodes {
        assert!(wait_until(PROPAGATION, || serves(n, "greet", 7)), "a node never served greet");
    }

    const CLIENTS: usize = 4;
    let stop = AtomicBool::new(false);
    let (results, killed_at) = std::thread::scope(|s| {
        let clients: Vec<_> = (0..CLIENTS)
            .map(|_| {
                s.spawn(|| {
                    let mut seen = Vec::new();
                    while !stop.load(Ordering::Relaxed) {
                        let started = Instant::now();
                        let r = call(&lb.url("/fn/greet"), "POST", &[("content-type", "application/json")], b"{}");
                        let ok = r.status == 200 && r.json()["v"] == 7;
                        seen.push((started, ok, r.status));
                    }
                    seen
                })
            })
            .collect();
        std::thread::sleep(Duration::from_millis(1500));
        nodes[1].kill9();
        // From here on the node is gone: its sockets are closed.
        let killed_at = Instant::now();
        std::thread::sleep(Duration::from_millis(3000));
        stop.store(true, Ordering::Relaxed);
        let results: Vec<_> = clients.into_iter().flat_map(|c| c.join().expect("client")).collect();
        (results, killed_at)
    });

    let failed: Vec<_> = results.iter().filter(|(_, ok, _)| !ok).collect();
    let after: Vec<_> = failed.iter().filter(|(started, _, _)| *started >= killed_at).collect();
    eprintln!("{} requests through nginx, {} failed (in flight on the killed node)", results.len(), failed.len());
    assert!(results.len() > 100, "the load was too light to mean anything: {} requests", results.len());
    assert!(after.is_empty(), "requests sent after the node died failed: {after:?}\n{}", lb.log());
    assert!(failed.len() <= CLIENTS, "more failures than requests in flight: {failed:?}");
    // The survivors still serve, directly and through the balancer.
    assert!(serves(&nodes[0], "greet", 7) && serves(&nodes[2], "greet", 7));
    nodes.remove(1);
}
