#!/usr/bin/env python3
"""The supervisor's CPU per request, one build against another, in one session.

    bench/compare.py NAME=BIN_DIR NAME=BIN_DIR [...] [--rounds 3]

Each BIN_DIR holds a `polyfaas` and its `polyfaas-worker` (for instance copied
out of target/release at an older commit). Each round starts every build in
turn on a fresh data dir, deploys the original project's WASM and JS bundles,
and drives each with wrk exactly as bench/run's warm rows do (same connections,
duration and warm-up), measuring the supervisor process's CPU µs per request.
Builds alternate within a round so that drift of the machine hits all of them.
Prints, per scenario, each build's median over the rounds and its ratio to the
first build. This is how "the supervisor's CPU per request grows by at most 3%"
is checked; bench/run builds and measures only the current tree.
"""

import importlib.machinery
import importlib.util
import os
import statistics
import sys
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
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    rounds = int(sys.argv[sys.argv.index("--rounds") + 1]) if "--rounds" in sys.argv else 3
    args = [a for a in args if not a.isdigit()]
    builds = [(name, Path(path).resolve()) for name, path in (a.split("=", 1) for a in args)]
    if len(builds) < 2:
        sys.exit(__doc__)
    seed_wasm = (run.SEEDS / "rust-wasm.zip").read_bytes()
    js = run.script_bundle("js", "handler.js", run.seed_js_handler())
    scenarios = [("warm wasm: original rust-wasm.zip", "/api/v1/handler/rust-wasm"),
                 ("warm js: original JS handler", "/api/v1/handler/javascript-example")]
    # figures[scenario][build] = [supervisor µs/req per round]
    figures = {s: {name: [] for name, _ in builds} for s, _ in scenarios}
    rps = {s: {name: [] for name, _ in builds} for s, _ in scenarios}
    for r in range(rounds):
        for name, binary_dir in builds:
            procs = run.Procs()
            tmp = Path(tempfile.mkdtemp(prefix="polyfaas-compare-"))
            tmp.chmod(0o755)
            try:
                server, base = start(procs, binary_dir, tmp / "data")
                run.deploy(base, "rust-wasm", seed_wasm)
                run.deploy(base, "javascript-example", js)
                meter = run.CpuMeter(server.pid, base)
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
                    figures[scenario][name].append(row["supervisor_us"])
                    rps[scenario][name].append(row["rps"])
                    run.log(f"round {r + 1} {name} {scenario}: {row['rps']:.0f} req/s, "
                            f"supervisor {row['supervisor_us']:.1f} µs/req")
            finally:
                procs.stop_all()
                run.shutil.rmtree(tmp, ignore_errors=True)
    print(f"\n{run.machine()}; {rounds} rounds, {run.DURATION} s each, {run.CONNECTIONS} connections")
    print(f"{'scenario':<38} {'build':<16} {'req/s':>8} {'supervisor µs/req (median)':>27} {'ratio':>7}")
    for scenario, _ in scenarios:
        first = statistics.median(figures[scenario][builds[0][0]] or [float("nan")])
        for name, _ in builds:
            runs = figures[scenario][name]
            median = statistics.median(runs) if runs else float("nan")
            print(f"{scenario:<38} {name:<16} {statistics.median(rps[scenario][name] or [0]):>8.0f} "
                  f"{median:>27.1f} {median / first:>6.3f}x  ({len(runs)} runs: "
                  f"{', '.join(f'{x:.1f}' for x in runs)})")


if __name__ == "__main__":
    main()
