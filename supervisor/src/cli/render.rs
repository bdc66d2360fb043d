//! What the CLI prints for a person: the server's JSON turned into a table, log
//! blocks, one-line summaries. Pure functions from JSON to text, so they are
//! tested here without a server; they never print or fetch anything themselves.

use comfy_table::{CellAlignment, Table, presets};
use serde_json::Value;

/// `polyfaas list`: one row per function.
pub fn function_table(functions: &[Value]) -> String {
    if functions.is_empty() {
        return "no functions deployed\n".to_string();
    }
    let mut table = plain_table(&["NAME", "LANGUAGE", "VERSION", "SIZE", "CREATED (UTC)"]);
    for f in functions {
        table.add_row(vec![
            text(&f["name"]),
            text(&f["language"]),
            format!("v{}", f["version"].as_u64().unwrap_or(0)),
            f["size"].as_u64().map(size).unwrap_or_default(),
            f["createdUnix"].as_u64().map(datetime).unwrap_or_default(),
        ]);
    }
    if let Some(column) = table.column_mut(3) {
        column.set_cell_alignment(CellAlignment::Right);
    }
    lines(&table)
}

/// `polyfaas logs`: one block per invocation, its text indented under a header
/// (which, from a cluster, ends with the node that ran it).
pub fn log_block(entry: &Value, with_node: bool) -> String {
    let status = entry["status"].as_u64().map(|s| s.to_string()).unwrap_or_else(|| "-".into());
    let mut out = format!(
        "{}  {}  v{}  {} {}  {}\n",
        entry["atUnix"].as_u64().map(datetime).unwrap_or_default(),
        text(&entry["requestId"]),
        entry["version"].as_u64().unwrap_or(0),
        status,
        text(&entry["outcome"]),
        entry["durationMs"].as_f64().map(duration).unwrap_or_default(),
    );
    if with_node {
        out.insert_str(out.len() - 1, &format!("  on {}", text(&entry["node"])));
    }
    let body = entry["text"].as_str().unwrap_or_default().trim_end();
    if body.is_empty() {
        out.push_str("    (no output)\n");
    }
    for line in body.lines() {
        out.push_str("    ");
        out.push_str(line);
        out.push('\n');
    }
    if entry["truncated"] == true {
        out.push_str("    … (cut: the rest was not kept)\n");
    }
    out
}

/// `polyfaas import`: one line per function imported, skipped or failed.
pub fn imported(answer: &Value) -> String {
    let list = |key: &str| answer[key].as_array().cloned().unwrap_or_default();
    let mut out = String::new();
    for f in list("imported") {
        let versions: Vec<String> =
            f["versions"].as_array().into_iter().flatten().filter_map(Value::as_u64).map(|v| format!("v{v}")).collect();
        out += &format!("imported {} ({}; current v{})\n", text(&f["name"]), versions.join(", "), text(&f["current"]));
    }
    for f in list("skipped") {
        out += &format!("skipped {}: {}\n", text(&f["name"]), text(&f["reason"]));
    }
    for f in list("failed") {
        out += &format!(
            "failed {} v{}: {} ({})\n",
            text(&f["name"]),
            text(&f["version"]),
            text(&f["error"]),
            text(&f["code"])
        );
    }
    if out.is_empty() {
        out = "the archive holds no functions\n".into();
    }
    out
}

/// `polyfaas deploy`: `deployed hello v3 (wasm, 4.1 MB, sha256 1a2b3c4d…) in 120 ms`.
pub fn deployed(summary: &Value, elapsed_ms: f64) -> String {
    format!("deployed {} in {}\n", version_line(summary), duration(elapsed_ms))
}

/// `polyfaas rollback`.
pub fn rolled_back(summary: &Value) -> String {
    format!("rolled back to {}\n", version_line(summary))
}

/// `hello v3 (wasm, 4.1 MB, sha256 1a2b3c4d…)`
fn version_line(summary: &Value) -> String {
    let sha = summary["sha256"].as_str().unwrap_or_default();
    format!(
        "{} v{} ({}, {}, sha256 {}…)",
        text(&summary["name"]),
        summary["version"].as_u64().unwrap_or(0),
        text(&summary["language"]),
        summary["size"].as_u64().map(size).unwrap_or_default(),
        sha.get(..8).unwrap_or(sha),
    )
}

/// What `polyfaas status` gathered; `None` where it could not be fetched.
pub struct Status<'a> {
    pub server: &'a str,
    pub health: Result<String, String>,
    pub ready: Result<String, String>,
    /// The workers, or why they are not shown.
    pub workers: Result<Vec<Value>, String>,
    pub functions: Result<Vec<Value>, String>,
}

/// `polyfaas status`.
pub fn status(s: &Status<'_>) -> String {
    let either = |r: &Result<String, String>| match r {
        Ok(v) | Err(v) => v.clone(),
    };
    let mut out =
        format!("server     {}\nhealth     {}\nreadiness  {}\n", s.server, either(&s.health), either(&s.ready));
    match &s.workers {
        Ok(workers) => {
            out.push_str(&format!("workers    {}\n", workers.len()));
            let mut table = plain_table(&["STATE", "LANGUAGE", "WORKERS"]);
            let mut counts = std::collections::BTreeMap::<(String, String), usize>::new();
            for w in workers {
                *counts.entry((text(&w["state"]), text(&w["language"]))).or_default() += 1;
            }
            for ((state, language), n) in counts {
                table.add_row(vec![state, language, n.to_string()]);
            }
            if !workers.is_empty() {
                out.push_str(&indent(&lines(&table)));
            }
        }
        Err(why) => out.push_str(&format!("workers    {why}\n")),
    }
    match &s.functions {
        Ok(functions) => {
            out.push_str(&format!("functions  {}\n", functions.len()));
            let mut table = plain_table(&["NAME", "LANGUAGE", "VERSION"]);
            for f in functions {
                table.add_row(vec![
                    text(&f["name"]),
                    text(&f["language"]),
                    format!("v{}", f["version"].as_u64().unwrap_or(0)),
                ]);
            }
            if !functions.is_empty() {
                out.push_str(&indent(&lines(&table)));
            }
        }
        Err(why) => out.push_str(&format!("functions  {why}\n")),
    }
    out
}

/// A borderless table with a header row, as kubectl prints.
fn plain_table(header: &[&str]) -> Table {
    let mut table = Table::new();
    table.load_style(presets::NOTHING).set_header(header.to_vec());
    table
}

/// The table's lines without the cell padding at either end of a line.
fn lines(table: &Table) -> String {
    table.lines().map(|l| format!("{}\n", l.strip_prefix(' ').unwrap_or(&l).trim_end())).collect()
}

fn indent(block: &str) -> String {
    block.lines().map(|l| format!("  {l}\n")).collect()
}

fn text(v: &Value) -> String {
    v.as_str().map(str::to_string).unwrap_or_else(|| if v.is_null() { String::new() } else { v.to_string() })
}

/// Decimal units, as file managers show sizes.
pub fn size(bytes: u64) -> String {
    match bytes {
        0..1_000 => format!("{bytes} B"),
        1_000..1_000_000 => format!("{:.1} kB", bytes as f64 / 1e3),
        _ => format!("{:.1} MB", bytes as f64 / 1e6),
    }
}

pub fn duration(ms: f64) -> String {
    if ms < 10.0 { format!("{ms:.1} ms") } else { format!("{} ms", ms.round()) }
}

/// `YYYY-MM-DD HH:MM:SS` in UTC.
pub fn datetime(unix: u64) -> String {
    let secs = unix % 86_400;
    let (y, m, d) = civil_from_days((unix / 86_400) as i64);
    format!("{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02}", secs / 3600, secs / 60 % 60, secs % 60)
}

/// Days since 1970-01-01 to a proleptic Gregorian date (Howard Hinnant's algorithm).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = (if mp < 10 { mp + 3 } else { mp - 9 }) as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn dates_sizes_and_durations() {
        assert_eq!(datetime(0), "1970-01-01 00:00:00");
        assert_eq!(datetime(951_782_400), "2000-02-29 00:00:00");
        assert_eq!(datetime(1_795_768_060), "2026-11-27 08:27:40");
        assert_eq!(size(999), "999 B");
        assert_eq!(size(4_123_456), "4.1 MB");
        assert_eq!(size(1_500), "1.5 kB");
        assert_eq!(duration(1.234), "1.2 ms");
        assert_eq!(duration(120.4), "120 ms");
    }

    #[test]
    fn a_deploy_is_one_line() {
        let summary = json!({"name": "hello", "version": 3, "language": "wasm", "size": 4_123_456,
                             "sha256": "1a2b3c4d5e6f", "createdUnix": 0});
        assert_eq!(deployed(&summary, 120.2), "deployed hello v3 (wasm, 4.1 MB, sha256 1a2b3c4d…) in 120 ms\n");
    }

    #[test]
    fn a_log_entry_is_a_block_with_indented_text() {
        let entry = json!({"seq": 1, "requestId": "r-1", "atUnix": 0, "version": 2, "outcome": "ok",
                           "status": 200, "durationMs": 1.25, "text": "one\ntwo\n", "truncated": false});
        assert_eq!(log_block(&entry, false), "1970-01-01 00:00:00  r-1  v2  200 ok  1.2 ms\n    one\n    two\n");
        let entry = json!({"node": "b/10.0.0.2:8080", "requestId": "r-2", "atUnix": 0, "version": 1,
                           "outcome": "ok", "status": 200, "durationMs": 1.0, "text": "", "truncated": false});
        assert_eq!(
            log_block(&entry, true),
            "1970-01-01 00:00:00  r-2  v1  200 ok  1.0 ms  on b/10.0.0.2:8080\n    (no output)\n"
        );
    }

    #[test]
    fn the_list_is_a_table() {
        let rows = [json!({"name": "a", "language": "js", "version": 1, "size": 10, "createdUnix": 0})];
        let table = function_table(&rows);
        let lines: Vec<Vec<&str>> = table.lines().map(|l| l.split_whitespace().collect()).collect();
        assert_eq!(lines[0], ["NAME", "LANGUAGE", "VERSION", "SIZE", "CREATED", "(UTC)"]);
        assert_eq!(lines[1], ["a", "js", "v1", "10", "B", "1970-01-01", "00:00:00"]);
    }
}
