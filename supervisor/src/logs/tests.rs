use super::*;

fn entry(text: &str) -> NewEntry<'_> {
    NewEntry {
        request_id: "r",
        version: 1,
        outcome: "ok",
        status: 200,
        duration: Duration::from_millis(1),
        text,
        truncated: false,
    }
}

#[test]
fn seq_is_strictly_increasing_across_functions() {
    let logs = Logs::new(1 << 20, "n", Keep::Here);
    let seqs: Vec<u64> = (0..100).map(|i| logs.record(&format!("f{}", i % 7), entry("x"))).collect();
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "{seqs:?}");
    let page = logs.page("f3", None, HISTORY);
    assert!(page.entries.windows(2).all(|w| w[0].seq < w[1].seq));
}

#[test]
fn the_budget_is_respected_and_the_oldest_go_first() {
    let budget = 200_000;
    let logs = Logs::new(budget, "n", Keep::Here);
    let text = "y".repeat(10_000);
    for i in 0..300 {
        logs.record(&format!("f{i}"), entry(&text));
        assert!(logs.kept_bytes() <= budget);
    }
    assert!(logs.page("f0", None, HISTORY).entries.is_empty(), "the oldest function's entry was evicted");
    assert_eq!(logs.page("f299", None, HISTORY).entries.len(), 1, "the newest stays");
    let kept: usize = (0..300).map(|i| logs.page(&format!("f{i}"), None, HISTORY).entries.len()).sum();
    assert!(kept >= budget / (10_000 + ENTRY_OVERHEAD + 10) - 1, "the budget is used, not wasted: {kept}");
}

#[test]
fn entries_are_capped_and_history_is_bounded() {
    let logs = Logs::new(64 << 20, "n", Keep::Here);
    let big = "é".repeat(ENTRY_CAP);
    logs.record("f", entry(&big));
    let page = logs.page("f", None, 1);
    assert!(page.entries[0].text.len() <= ENTRY_CAP && page.entries[0].truncated);
    for _ in 0..HISTORY * 2 {
        logs.record("f", entry("z"));
    }
    assert_eq!(logs.page("f", None, usize::MAX).entries.len(), HISTORY);
    logs.forget("f");
    assert_eq!(logs.kept_bytes(), 0);
}

#[test]
fn after_a_cursor_come_only_newer_entries_oldest_first() {
    let logs = Logs::new(1 << 20, "n", Keep::Here);
    logs.record("f", entry("1"));
    logs.record("g", entry("other"));
    let first = logs.page("f", None, HISTORY);
    assert_eq!(first.entries.len(), 1);
    let empty = logs.page("f", Some(first.cursor), HISTORY);
    assert!(empty.entries.is_empty());
    for n in 2..=5 {
        logs.record("f", entry(&n.to_string()));
    }
    let next = logs.page("f", Some(empty.cursor), 2);
    assert_eq!(next.entries.iter().map(|e| e.text.as_str()).collect::<Vec<_>>(), ["2", "3"]);
    let rest = logs.page("f", Some(next.cursor), HISTORY);
    assert_eq!(rest.entries.iter().map(|e| e.text.as_str()).collect::<Vec<_>>(), ["4", "5"]);
    let newest = logs.page("f", None, 2);
    assert_eq!(newest.entries.iter().map(|e| e.text.as_str()).collect::<Vec<_>>(), ["4", "5"]);
}

#[test]
fn cursors_round_trip_and_bad_ones_are_refused() {
    let logs = Logs::new(1 << 20, "n", Keep::Here);
    let cursor = Cursor(42);
    assert_eq!(logs.parse_cursor(&logs.format_cursor(cursor)).expect("valid"), cursor);
    for bad in ["", "42", "x-1", "0-", "-1", "00000000-zz", "1-11111111111111111"] {
        assert!(logs.parse_cursor(bad).is_err(), "{bad:?}");
    }
    let foreign = format!("{:08x}-2a", logs.boot.wrapping_add(1));
    assert_eq!(logs.parse_cursor(&foreign).expect("valid"), Cursor(0), "an earlier run's cursor starts over");
}

#[tokio::test]
async fn a_waiting_reader_wakes_when_an_entry_lands() {
    let logs = Arc::new(Logs::new(1 << 20, "n", Keep::Here));
    let cursor = logs.page("f", None, HISTORY).cursor;
    let writer = logs.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(50)).await;
        writer.record("other", entry("not mine"));
        writer.record("f", entry("mine"));
    });
    let page = logs.wait("f", Some(cursor), HISTORY, Duration::from_secs(20)).await;
    assert_eq!(page.entries.len(), 1);
    assert_eq!(page.entries[0].text, "mine");
    let none = logs.wait("f", Some(page.cursor), HISTORY, Duration::from_millis(10)).await;
    assert!(none.entries.is_empty());
}

#[test]
fn the_outbox_ships_in_order_survives_a_failure_and_stays_within_budget() {
    let here = Logs::new(1 << 20, "n", Keep::Here);
    here.record("f", entry("x"));
    assert!(here.take_outgoing(usize::MAX).is_empty(), "one node ships nothing");

    let budget = 50_000;
    let logs = Logs::new(budget, "node-a", Keep::AndShip);
    for n in 0..10 {
        logs.record(if n % 2 == 0 { "f" } else { "g" }, entry(&n.to_string()));
    }
    let first = logs.take_outgoing(3 * (ENTRY_OVERHEAD + 10));
    assert_eq!(first.len(), 3, "a batch stops at its byte cap");
    assert!(first.iter().all(|(_, e)| &*e.node == "node-a"));
    // The database refused it: it goes back before anything newer.
    assert_eq!(logs.put_back(first), 0);
    let all = logs.take_outgoing(usize::MAX);
    let texts: Vec<&str> = all.iter().map(|(_, e)| e.text.as_str()).collect();
    assert_eq!(texts, ["0", "1", "2", "3", "4", "5", "6", "7", "8", "9"]);
    assert!(logs.take_outgoing(usize::MAX).is_empty());
    // A batch bigger than anything else still goes, alone.
    let big = "b".repeat(10_000);
    logs.record("f", entry(&big));
    assert_eq!(logs.take_outgoing(1).len(), 1);

    // The database stays away: the outbox keeps the newest, within budget.
    for _ in 0..20 {
        logs.record("f", entry(&big));
    }
    let dropped = logs.put_back(Vec::new());
    assert!(dropped >= 20 - (budget / 10_000) as u64, "dropped {dropped}");
    let kept = logs.take_outgoing(usize::MAX);
    assert!(kept.iter().map(|(_, e)| e.cost).sum::<usize>() <= budget);
    assert!(kept.windows(2).all(|w| w[0].1.seq < w[1].1.seq));

    // A deleted function's unshipped entries go with it.
    logs.record("f", entry("gone"));
    logs.record("g", entry("stays"));
    logs.forget("f");
    let left = logs.take_outgoing(usize::MAX);
    assert_eq!(left.iter().map(|(f, _)| &**f).collect::<Vec<_>>(), ["g"]);
}

#[test]
fn excerpts_are_bounded_and_escaped() {
    assert_eq!(excerpt("a\nb\u{1b}[31m\n", 100), "a\\nb\\u{1b}[31m");
    let long = "x".repeat(5000);
    assert_eq!(excerpt(&long, 2048), format!("{} … 2952 more bytes", "x".repeat(2048)));
}

#[test]
fn a_batch_keeps_only_each_functions_newest_entries_in_order() {
    let logs = Logs::new(1 << 20, "n", Keep::AndShip);
    for i in 0..10 {
        logs.record(if i % 3 == 0 { "a" } else { "b" }, entry(&i.to_string()));
    }
    assert_eq!(logs.outgoing_len(), 10);
    let batch = logs.take_outgoing(usize::MAX);
    assert_eq!(logs.outgoing_len(), 0);
    let texts = |kept: Vec<&Outgoing>| kept.iter().map(|(f, e)| format!("{f}{}", e.text)).collect::<Vec<_>>();
    // In the batch: a0 b1 b2 a3 b4 b5 a6 b7 b8 a9.
    assert_eq!(texts(newest_per_function(&batch, 2)), ["a6", "b7", "b8", "a9"]);
    assert_eq!(texts(newest_per_function(&batch, 100)).len(), 10);
    assert!(newest_per_function(&batch, 0).is_empty());
}
