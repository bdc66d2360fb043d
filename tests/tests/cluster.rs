//! Several nodes, one PostgreSQL store: a real PostgreSQL (started in a temp
//! dir), real `polyfaas` nodes on ephemeral ports, each with its own data dir.
//! Propagation is asserted with a generous bound (the 1 s target is measured by
//! `bench/run`, never here).

mod common;

use std::time::Duration;

use common::attack::script_bundle;
use common::postgres::Postgres;
use common::{Server, wait_until, wasm_bundle};
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
    assert_eq!(a.get("/readyz").status, 200, "a node stays ready while the database is away");

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
