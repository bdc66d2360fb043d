#!/usr/bin/env python3
"""Instructions a worker executes per warm invocation, counted by callgrind.

    bench/instructions.py [NAME=BIN_DIR ...] [--languages wasm,hello,js,python,ruby] [--seconds 15]

Time per request on these VMs drifts by 10-20% between runs; instruction counts
do not (the same build measured twice agreed within 0.2%). So this is the
figure to cut a worker's own work by, and `bench/compare.py` the one that says
what the cut buys in CPU time and requests per second.

Each BIN_DIR holds a `polyfaas` and its `polyfaas-worker` (default: the current
release build, under CARGO_TARGET_DIR). For each build the server starts with
its workers wrapped in `valgrind --tool=callgrind`, deploys the original
project's WASM and JS bundles, hello-wasm and the Python and Ruby handlers of
`bench/handlers/`, calls each once, then drives it
with `wrk -c1` while callgrind counts that one worker, and prints instructions
per invocation. Valgrind's own system calls and address space are outside the
sandbox's policy, so the sandbox's seccomp, Landlock, rlimit and privilege
layers are switched off for this measurement (nothing else may do that).
Python and Ruby workers take longer than the server's default 10 s to start
under valgrind, so the server is given `--worker-start-timeout-ms` of two
minutes. The callgrind files stay in the printed directory, for
`callgrind_annotate`.
"""

import argparse
import importlib.machinery
import importlib.util
import json
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
_loader = importlib.machinery.SourceFileLoader("bench_run", str(HERE / "run"))
_spec = importlib.util.spec_from_loader("bench_run", _loader)
run = importlib.util.module_from_spec(_spec)
_loader.exec_module(run)
from measure import LUA_FIXED  # noqa: E402  (on the path bench/run set)

WARMUP_S = 3
HANDLERS = HERE / "handlers"


def bundles():
    return {
        "wasm": ("rust-wasm", (run.SEEDS / "rust-wasm.zip").read_bytes(), "/api/v1/handler/rust-wasm"),
        "hello": ("hello-wasm", run.hello_wasm_bundle(), "/fn/hello-wasm"),
        "js": ("javascript-example", run.script_bundle("js", "handler.js", run.seed_js_handler()),
               "/api/v1/handler/javascript-example"),
        "python": ("python-example", run.script_bundle("python", "handler.py", (HANDLERS / "original.py").read_text()),
                   "/fn/python-example"),
        "ruby": ("ruby-example", run.script_bundle("ruby", "handler.rb", (HANDLERS / "original.rb").read_text()),
                 "/fn/ruby-example"),
    }


def total_instructions(dump):
    """The `totals:` (or `summary:`) line of a callgrind dump: instructions executed."""
    for line in dump.read_text(errors="replace").splitlines():
        if line.startswith(("totals:", "summary:")):
            return int(line.split()[1])
    raise RuntimeError(f"{dump}: no totals line")


def requests_done(output):
    for line in output.splitlines():
        if "requests in" in line:
            return int(line.split()[0])
    raise RuntimeError(f"wrk printed no request count:\n{output}")


def measure(name, bin_dir, chosen, seconds, out_dir):
    wrapper = out_dir / f"worker-{name}.sh"
    wrapper.write_text("#!/bin/sh\nexec valgrind --tool=callgrind --callgrind-out-file="
                       f"{out_dir}/{name}.%p.out {bin_dir / 'polyfaas-worker'} \"$@\"\n")
    wrapper.chmod(0o755)
    procs = run.Procs()
    data = Path(tempfile.mkdtemp(prefix="polyfaas-instructions-"))
    results = {}
    try:
        port = run.free_port()
        cmd = [str(bin_dir / "polyfaas"), "serve", "--listen", f"127.0.0.1:{port}", "--data-dir", str(data / "d"),
               # The Ruby runtime precompiled by bench/run or the tests: compiling it
               # under valgrind at start would take many minutes.
               "--ruby-wasm", str(run.ROOT / "runtimes" / "ruby+stdlib.wasm"),
               "--runtime-cache", str(run.TARGET / "runtime-cache"),
               "--admin-token", run.ADMIN, "--worker-bin", str(wrapper), "--workers", str(len(chosen) + 1),
               "--warm-workers", "0", "--worker-start-timeout-ms", "120000", "--sandbox-disable", "seccomp,landlock,rlimits,drop-privileges"]
        # Its log beside the dumps: a worker that does not start under valgrind says so there.
        with open(out_dir / f"server-{name}.log", "wb") as log:
            server = subprocess.Popen(cmd, stdout=log, stderr=log, env=dict(os.environ, RUST_LOG="warn"))
        procs.procs.append(server)
        run.wait_port(port, server)
        base = f"http://127.0.0.1:{port}"
        while run.request("GET", f"{base}/readyz")[0] != 200:
            time.sleep(0.1)
        for language, (function, bundle, path) in chosen.items():
            run.deploy(base, function, bundle)
            status, body = run.request("POST", f"{base}{path}", run.BODY, {"content-type": "application/json"})
            if status != 200:
                raise RuntimeError(f"{name} {function}: {status} {body[:200]!r}")
            pid = next(w["pid"] for w in run.workers(base) if w.get("function") == function)
            script = run.lua_file(LUA_FIXED.format(method="POST", body=json.dumps(run.BODY.decode())))
            wrk = ["wrk", "-t1", "-c1", "-s", script, f"{base}{path}"]
            subprocess.run([*wrk[:3], f"-d{WARMUP_S}s", *wrk[3:]], check=True, capture_output=True)
            subprocess.run(["callgrind_control", "-z", str(pid)], check=True, capture_output=True)
            done = subprocess.run([*wrk[:3], f"-d{seconds}s", *wrk[3:]], check=True, capture_output=True, text=True)
            subprocess.run(["callgrind_control", "-d", str(pid)], check=True, capture_output=True)
            dumps = sorted(out_dir.glob(f"{name}.{pid}.out.*"), key=lambda p: p.stat().st_mtime)
            if not dumps:
                raise RuntimeError(f"{name} {function}: callgrind wrote no dump for worker {pid}")
            count = requests_done(done.stdout)
            results[language] = (total_instructions(dumps[-1]) / count, count, dumps[-1])
            run.log(f"{name} {function}: {results[language][0]:,.0f} instructions per invocation over {count} calls")
    finally:
        procs.stop_all()
        shutil.rmtree(data, ignore_errors=True)
    return results


def main():
    parser = argparse.ArgumentParser(description="Instructions per warm invocation in a worker, by callgrind.")
    parser.add_argument("builds", nargs="*", metavar="NAME=BIN_DIR")
    parser.add_argument("--languages", default="wasm,hello,js", help="of wasm, hello, js, python, ruby")
    parser.add_argument("--seconds", type=int, default=15)
    opts = parser.parse_args()
    for tool in ("valgrind", "callgrind_control", "wrk"):
        if shutil.which(tool) is None:
            parser.error(f"{tool} is not installed (Debian: valgrind, wrk)")
    builds = [(n, Path(p).resolve()) for n, p in (b.split("=", 1) for b in opts.builds)] or [
        ("current", run.TARGET / "release")]
    everything = bundles()
    chosen = {k: everything[k] for k in opts.languages.split(",")}
    out_dir = Path(tempfile.mkdtemp(prefix="polyfaas-callgrind-"))
    out_dir.chmod(0o755)
    table = {name: measure(name, bin_dir, chosen, opts.seconds, out_dir) for name, bin_dir in builds}
    print(f"\n{run.machine()}; wrk -c1 for {opts.seconds} s per function; callgrind dumps in {out_dir}")
    print(f"{'function':<22}" + "".join(f"{name:>22}" for name, _ in builds))
    for language, (function, _, _) in chosen.items():
        cells = []
        for name, _ in builds:
            per_call = table[name][language][0]
            first = table[builds[0][0]][language][0]
            cells.append(f"{per_call:>12,.0f} ({per_call / first:.3f})")
        print(f"{function:<22}" + "".join(f"{c:>22}" for c in cells))


if __name__ == "__main__":
    main()
