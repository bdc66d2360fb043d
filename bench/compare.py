#!/usr/bin/env python3
"""The supervisor's CPU per request, one build against another, in one session.

    bench/compare.py NAME=BIN_DIR NAME=BIN_DIR [...] [--rounds 3] [--languages wasm,js,python,ruby]

Each BIN_DIR holds a `polyfaas` and its `polyfaas-worker` (for instance copied
out of target/release at an older commit). Each round starts every build in
turn on a fresh data dir, deploys bench/run's warm bundles (the original
project's WASM and JS, the same Python and Ruby handler; `--languages` picks,
default wasm and js), and drives each with wrk exactly as bench/run's warm rows
do (same connections, duration and warm-up), measuring CPU µs per request: the
supervisor process's, its workers', and the whole machine's (wrk included).
Builds alternate within a round so that drift of the machine hits all of them.
Prints, per scenario, each build's medians over the rounds and their ratio to
the first build's. This is how "CPU per request grows by at most 3%" is
checked; bench/run builds and measures only the current tree.
"""

import argparse
import importlib.machinery
import importlib.util
import os
import statistics
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
_loader = importlib.machinery.SourceFileLoader("bench_run", str(HERE / "run"))
_spec = importlib.util.spec_from_loader("bench_run", _loader)
run = importlib.util.module_from_spec(_spec)
_loader.exec_module(run)


def start(procs, binary_dir, data_dir):
    port = run.free_port()
    cmd = [str(binary_dir / "polyfaas"), "serve", "--listen", f"127.0.0.1:{port}", "--data-dir", str(data_dir),
           "--ruby-wasm", str(run.ROOT / "runtimes" / "ruby+stdlib.wasm"),
           "--runtime-cache", str(run.TARGET / "runtime-cache"), "--admin-token", run.ADMIN]
    proc = procs.start(cmd, port, env=dict(os.environ, RUST_LOG="warn"))
    base = f"http://127.0.0.1:{port}"
    while run.request("GET", f"{base}/readyz")[0] != 200:
        if proc.poll() is not None:
            raise RuntimeError(f"{binary_dir}: polyfaas exited")
        run.time.sleep(0.05)
    return proc, base


def main():
    parser = argparse.ArgumentParser(description="One build's CPU per request against another's.")
    parser.add_argument("builds", nargs="+", metavar="NAME=BIN_DIR")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--languages", default="wasm,js", help="of wasm, js, python, ruby")
    opts = parser.parse_args()
    if len(opts.builds) < 2 or any("=" not in b for b in opts.builds):
        parser.error("at least two NAME=BIN_DIR")
    rounds, wanted = opts.rounds, opts.languages.split(",")
    builds = [(name, Path(path).resolve()) for name, path in (b.split("=", 1) for b in opts.builds)]
    handlers = run.BENCH / "handlers"
    bundles = {
        "wasm": ("rust-wasm", (run.SEEDS / "rust-wasm.zip").read_bytes(),
                 "warm wasm: original rust-wasm.zip", "/api/v1/handler/rust-wasm"),
        "js": ("javascript-example", run.script_bundle("js", "handler.js", run.seed_js_handler()),
               "warm js: original JS handler", "/api/v1/handler/javascript-example"),
        "python": ("python-example", run.script_bundle("python", "handler.py", (handlers / "original.py").read_text()),
                   "warm python: same handler", "/fn/python-example"),
        "ruby": ("ruby-example", run.script_bundle("ruby", "handler.rb", (handlers / "original.rb").read_text()),
                 "warm ruby: same handler", "/fn/ruby-example"),
    }
    chosen = [bundles[w] for w in wanted]
    scenarios = [(scenario, path) for _, _, scenario, path in chosen]
    columns = ("supervisor_us", "workers_us", "machine_us")
    # figures[scenario][build][column] = [µs/req per round]
    figures = {s: {name: {c: [] for c in columns} for name, _ in builds} for s, _ in scenarios}
    rps = {s: {name: [] for name, _ in builds} for s, _ in scenarios}
    for r in range(rounds):
        for name, binary_dir in builds:
            procs = run.Procs()
            tmp = Path(tempfile.mkdtemp(prefix="polyfaas-compare-"))
            tmp.chmod(0o755)
            try:
                server, base = start(procs, binary_dir, tmp / "data")
                for function, bundle, _, _ in chosen:
                    run.deploy(base, function, bundle)
                meter = run.CpuMeter(server.pid, lambda: [w["pid"] for w in run.workers(base)])
                for scenario, path in scenarios:
                    try:
                        row = run.wrk(f"{base}{path}", meter=meter)
                    except RuntimeError as e:
                        # Left out of the medians, and said.
                        run.log(f"round {r + 1} {name} {scenario}: no figure: {e}")
                        continue
                    if row["errors"]:
                        run.log(f"round {r + 1} {name} {scenario}: {row['errors']} errors; left out")
                        continue
                    for c in columns:
                        figures[scenario][name][c].append(row[c])
                    rps[scenario][name].append(row["rps"])
                    run.log(f"round {r + 1} {name} {scenario}: {row['rps']:.0f} req/s, µs/req: supervisor "
                            f"{row['supervisor_us']:.1f}, workers {row['workers_us']:.1f}, machine {row['machine_us']:.1f}")
            finally:
                procs.stop_all()
                run.shutil.rmtree(tmp, ignore_errors=True)
    print(f"\n{run.machine()}; {rounds} rounds, {run.DURATION} s each, {run.CONNECTIONS} connections")
    print("CPU µs per request, median of the rounds (ratio to the first build)")
    print(f"{'scenario':<34} {'build':<18} {'req/s':>7} {'supervisor':>16} {'workers':>16} {'machine':>16}")

    def median(values):
        return statistics.median(values) if values else float("nan")

    for scenario, _ in scenarios:
        first = figures[scenario][builds[0][0]]
        for name, _ in builds:
            mine = figures[scenario][name]
            cells = [f"{median(mine[c]):7.1f} ({median(mine[c]) / median(first[c]):.3f})" for c in columns]
            print(f"{scenario:<34} {name:<18} {median(rps[scenario][name]):>7.0f} "
                  + " ".join(f"{c:>16}" for c in cells) + f"  [{len(mine['machine_us'])} runs]")

if __name__ == "__main__":
    main()
