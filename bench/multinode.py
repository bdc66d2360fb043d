"""bench/run's multi-node part: three polyfaas nodes sharing one PostgreSQL store
behind nginx (deploy/nginx/polyfaas.conf), on this same machine.

Prints two things: warm throughput through the balancer with its ratio to the
single node measured earlier in the same run (the cost of the extra hop and of
three pools sharing the cores) and PostgreSQL's CPU per request, and how long a deploy made on one node takes to
be served by the two others (p50 and p99 over PROPAGATION_RUNS deploys;
target p99 <= 1 s).
"""

import glob
import os
import signal
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

import nginx  # bench/nginx.py, beside this file
from measure import StoreMeter  # bench/measure.py: the database's CPU per request

PROPAGATION_RUNS = 20


def install(as_root, sh):
    missing = [p for p in ("postgresql", "nginx-light")
               if subprocess.run(["dpkg", "-s", p], capture_output=True).returncode != 0
               and not (p == "nginx-light" and Path("/usr/sbin/nginx").exists())]
    if missing:
        sh(as_root(["mkdir", "-p", "/etc/postgresql-common/createcluster.d"]))
        sh(as_root(["sh", "-c", "echo 'create_main_cluster = false' > "
                                "/etc/postgresql-common/createcluster.d/polyfaas.conf"]))
        sh(as_root(["env", "DEBIAN_FRONTEND=noninteractive", "apt-get", "install", "-y", "-qq", *missing]),
           stdout=subprocess.DEVNULL)


class Postgres:
    """A throwaway cluster in a temp dir, trust auth, loopback TCP only."""

    def __init__(self, port):
        self.port = port
        self.bin = Path(sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))[-1]).parent
        self.dir = Path(tempfile.mkdtemp(prefix="polyfaas-bench-pg-"))
        self.prefix = []
        if os.geteuid() == 0:
            subprocess.run(["chown", "postgres:", str(self.dir)], check=True)
            self.prefix = ["setpriv", "--reuid=postgres", "--regid=postgres", "--init-groups", "--"]
        subprocess.run([*self.prefix, str(self.bin / "initdb"), "-U", "polyfaas", "--auth=trust", "--no-sync",
                        "-D", str(self.dir / "data")], check=True, stdout=subprocess.DEVNULL)
        self.proc = subprocess.Popen(
            [*self.prefix, str(self.bin / "postgres"), "-D", str(self.dir / "data"), "-p", str(port),
             "-c", "listen_addresses=127.0.0.1", "-c", "unix_socket_directories=", "-c", "fsync=off"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.time() + 30
        while subprocess.run([str(self.bin / "pg_isready"), "-q", "-h", "127.0.0.1", "-p", str(port)]).returncode:
            if time.time() > deadline:
                raise RuntimeError("PostgreSQL did not start")
            time.sleep(0.1)

    def url(self):
        return f"postgres://polyfaas@127.0.0.1:{self.port}/postgres"

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            self.proc.wait(timeout=30)
        subprocess.run(["rm", "-rf", str(self.dir)])


def start_nginx(procs, root, nodes, port, tmp):
    site = (root / "deploy" / "nginx" / "polyfaas.conf").read_text()
    for i, base in enumerate(nodes):
        site = site.replace(f"127.0.0.1:{8081 + i}", base.removeprefix("http://"))
    site = site.replace("listen 8080;", f"listen 127.0.0.1:{port};")
    d = tmp / "nginx"
    d.mkdir()
    (d / "site.conf").write_text(site)
    nginx.start(procs, d, port, f"include {d}/site.conf;")
    return f"http://127.0.0.1:{port}"


def propagation(deploy, request, script_bundle, nodes):
    """ms from a deploy returning on nodes[0] until every other node serves it."""
    times = []
    for i in range(PROPAGATION_RUNS):
        source = f"function handler(ctx) {{ return {{ v: {i} }}; }}\nhandler\n"
        deploy(nodes[0], "propagate", script_bundle("js", "handler.js", source))
        returned = time.perf_counter()
        pending = set(nodes[1:])
        while pending:
            for base in list(pending):
                status, body = request("POST", f"{base}/fn/propagate", b"{}")
                if status == 200 and f'"v":{i}' in body.decode(errors="replace").replace(" ", ""):
                    pending.discard(base)
            if time.perf_counter() - returned > 30:
                raise RuntimeError(f"deploy {i} did not reach every node within 30 s")
            if pending:
                time.sleep(0.002)
        times.append((time.perf_counter() - returned) * 1000)
    times.sort()
    p99 = times[min(len(times) - 1, round(0.99 * (len(times) - 1)))]
    return {"p50_ms": statistics.median(times), "p99_ms": p99, "max_ms": times[-1], "runs": len(times)}


def run(ctx):
    """Starts the cluster and measures; `ctx` carries bench/run's helpers."""
    procs, tmp = ctx["procs"], ctx["tmp"]
    pg = Postgres(ctx["free_port"]())
    try:
        nodes = []
        for i in range(3):
            _, base = ctx["start_polyfaas"](procs, tmp / f"node{i}", ("--store", pg.url()))
            nodes.append(base)
        lb = start_nginx(procs, ctx["root"], nodes, ctx["free_port"](), tmp)
        ctx["deploy"](nodes[0], "hello-wasm", ctx["hello_wasm_bundle"]())
        deadline = time.time() + 30
        while any(ctx["request"]("POST", f"{b}/fn/hello-wasm", b"{}")[0] != 200 for b in nodes[1:]):
            if time.time() > deadline:
                raise RuntimeError("hello-wasm did not reach every node")
            time.sleep(0.05)
        row = ctx["measure"](f"3 nodes behind nginx (one PostgreSQL store): hello-wasm", f"{lb}/fn/hello-wasm",
                             StoreMeter(pg.proc.pid))
        prop = propagation(ctx["deploy"], ctx["request"], ctx["script_bundle"], nodes)
        return row, prop
    finally:
        pg.stop()
