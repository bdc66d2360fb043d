"""The table bench/run prints, and how a row is made of its rounds.

Kept apart from bench/run so that the script there reads as what it measures, in
order; this file only turns measurements into rows, the table and the JSON.
"""

import json
import statistics
import time
from pathlib import Path

from measure import BODY, CONNECTIONS, DURATION, QUICK, WARMUP

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent


def combine(name, runs, baseline, target, baseline_runs):
    """One row from a scenario's runs: the median of each figure over the rounds,
    the errors of all of them, and its ratio as the median of each round's ratio
    to its baseline's run in that round."""
    row = {"scenario": name, "baseline": baseline, "target": target, "rounds": len(runs),
           "rps_each_round": [r["rps"] for r in runs]}
    for key in runs[0]:
        values = [r[key] for r in runs if r.get(key) is not None]
        row[key] = statistics.median(values) if values else None
    row["errors"] = sum(r["errors"] for r in runs)
    if baseline_runs:
        row["ratio"] = statistics.median(r["rps"] / b["rps"] for r, b in zip(runs, baseline_runs))
    return row


def report(results, cold_runs):
    rows, fig = results["rows"], results["figures"]
    print(f"\npolyfaas benchmark — {results['machine']}")
    print(f"wrk -t1 -c{CONNECTIONS} -d{DURATION}s (after a {WARMUP} s warm-up), GET/POST with a {len(BODY)}-byte JSON body"
          f"{' (--quick)' if QUICK else ''}")
    print(f"{results['rounds']} round{'s' if results['rounds'] > 1 else ''}: each row with a ratio is the median of "
          f"its rounds, its ratio the median of each round's ratio to its baseline in that round\n")
    head = (f"{'scenario':<55} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'errors':>6} {'ratio':>7} "
            f"{'CPU µs/req: machine':>19} {'supervisor':>10} {'workers':>8}  target")
    print(head)
    print("-" * len(head))
    for r in rows:
        base = r.get("baseline")
        # Rows measured in rounds carry their own (the median of each round's);
        # the 3-node row, its rounds' median against the single node's row.
        ratio = r["ratio"] if r.get("ratio") is not None else (r["rps"] / base["rps"] if base else None)
        r["ratio"] = ratio
        target = ""
        if r.get("target"):
            t = r["target"]
            ok = ratio is not None and ratio >= t["ratio"] and r["p99_ms"] <= t.get("p99_ms", 1e9)
            target = f">= {t['ratio']:.2f}x" + (f", p99 <= {t['p99_ms']} ms" if "p99_ms" in t else "") + \
                     ("  MET" if ok else "  NOT MET")
            r["target_met"] = ok
        us = lambda k: f"{r[k]:.0f}" if r.get(k) is not None else "-"
        print(f"{r['scenario']:<55} {r['rps']:>9.0f} {r['p50_ms']:>8.2f} {r['p99_ms']:>8.2f} {r['errors']:>6} "
              f"{(f'{ratio:.2f}x' if ratio else '-'):>7} {us('machine_us'):>19} {us('supervisor_us'):>10} "
              f"{us('workers_us'):>8}  {target}")
    print()
    cold_targets = {"wasm": 10, "js": 30, "python": 100, "ruby": 100}
    for lang, ms in fig["cold_start_ms"].items():
        t = cold_targets[lang]
        print(f"cold start {lang:<7} {ms:8.1f} ms  (median of {cold_runs}; target <= {t} ms: {'MET' if ms <= t else 'NOT MET'})")
    d = fig["deploy_4mb_wasm_ms"]
    print(f"deploy of the 4 MB original wasm bundle {d:8.0f} ms  (target <= 1500 ms: {'MET' if d <= 1500 else 'NOT MET'})")
    print(f"supervisor RSS idle {fig['supervisor_rss_idle_mb']:.1f} MB; with {fig['many_functions']} functions "
          f"{fig['supervisor_rss_many_functions_mb']:.1f} MB (target <= 150 MB with 1,000: "
          f"{'MET' if fig['supervisor_rss_many_functions_mb'] <= 150 else 'NOT MET'}"
          f"{'' if fig['many_functions'] >= 1000 else ', measured with fewer in --quick'})")
    for lang, mb in sorted(fig["warm_worker_rss_mb"].items()):
        extra = f" (target <= 40 MB: {'MET' if mb <= 40 else 'NOT MET'})" if lang == "wasm" else ""
        print(f"warm {lang} worker RSS {mb:.1f} MB{extra}")
    print(f"supervisor RSS + workers' private memory with {fig['pool_workers']} workers alive "
          f"{fig['pool_private_mb']:.1f} MB")
    for scenario, ratio in results.get("php_fpm", {}).items():
        print(f"{scenario} against nginx + PHP-FPM: {ratio:.2f}x (target >= 1.00x: {'MET' if ratio >= 1 else 'NOT MET'})")
    for r in rows:
        if r.get("store_us") is not None:
            print(f"{r['scenario']}: PostgreSQL's CPU {r['store_us']:.0f} µs per request")
    prop = fig["propagation"]
    print(f"deploy on one node → served by the two others: p50 {prop['p50_ms']:.0f} ms, p99 {prop['p99_ms']:.0f} ms "
          f"over {prop['runs']} deploys (target p99 <= 1000 ms: {'MET' if prop['p99_ms'] <= 1000 else 'NOT MET'})")
    for r in rows:
        if r["scenario"].startswith("warm ") and r.get("worker_faults_per_request") is not None:
            print(f"{r['scenario']}: {r['worker_faults_per_request']:.1f} page faults per request in the workers")
    page = fig["page_fault"]
    print(f"floor of one page of a fresh instance's memory (its first write, then madvise(MADV_DONTNEED); "
          f"bench/baselines/page_fault.c): {page['cpu_us']:.2f} µs CPU")
    hop = fig["process_hop"]
    print(f"floor of one process hop (64-byte socketpair ping-pong, bench/baselines/process_hop.c): "
          f"{hop['two_cores']['cpu_us']:.1f} µs CPU per round trip across the two cores "
          f"({hop['two_cores']['round_trips_per_s']:.0f}/s), {hop['one_core']['cpu_us']:.1f} µs pinned to one")
    # A second run on the same day gets its own file: earlier ones are cited.
    stem = f"{time.strftime('%Y-%m-%d')}{'-quick' if QUICK else ''}"
    out = next(p for n in range(1, 100) if not (p := BENCH / "results" / (stem + (f"-{n}" if n > 1 else "") + ".json"))
               .exists())
    out.parent.mkdir(exist_ok=True)
    for r in rows:
        if r.get("baseline"):
            r["baseline"] = r["baseline"]["scenario"]
    out.write_text(json.dumps(results, indent=2))
    print(f"\nresults: {out.relative_to(ROOT)}")
