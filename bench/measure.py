"""How bench/run and bench/compare.py measure: wrk's load and its figures, the
CPU and page faults each process spent during a run, and the floors of this
machine (one process hop, one page of a fresh instance's memory), each from a
small C program in bench/baselines/ built by bench/run.

Owns no process: the caller starts what is measured and passes its pids.
"""

import json
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

QUICK = "--quick" in sys.argv
DURATION = 3 if QUICK else 10
WARMUP = 1 if QUICK else 2
CONNECTIONS = 32
BODY = b'{"name":"John"}'

# ---------------------------------------------------------------- wrk

LUA_FIXED = """wrk.method = "{method}"
wrk.body = {body}
wrk.headers["Content-Type"] = "application/json"
"""

LUA_ROUND_ROBIN = """local n = {count}
local i = 0
request = function()
  i = (i % n) + 1
  return wrk.format("POST", string.format("/fn/f%04d", i - 1), {{["Content-Type"] = "application/json"}}, '{{"name":"John"}}')
end
"""


def lua_file(text):
    fd, path = tempfile.mkstemp(suffix=".lua")
    os.write(fd, text.encode())
    os.close(fd)
    return path


def to_ms(text):
    m = re.match(r"([\d.]+)(us|ms|s|m|h)$", text)
    if not m:
        raise RuntimeError(f"wrk printed a latency this script cannot read: {text!r}")
    value, unit = float(m.group(1)), m.group(2)
    return value * {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3, "h": 3600e3}[unit]


def stat_fields(pid):
    """/proc/<pid>/stat after the command name (field 3, the state, is [0]), or
    None if the process is gone."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None


def cpu_seconds(pid, reaped_children=False):
    """utime + stime of a process (all its threads), or None if it is gone; or
    the same summed over its children that it has reaped."""
    fields = stat_fields(pid)
    if fields is None:
        return None
    first = 13 if reaped_children else 11
    return (int(fields[first]) + int(fields[first + 1])) / os.sysconf("SC_CLK_TCK")


def minor_faults(pid, reaped_children=False):
    """Minor page faults of a process (all its threads), or None if it is gone;
    or the same summed over its children that it has reaped."""
    fields = stat_fields(pid)
    return None if fields is None else int(fields[8 if reaped_children else 7])


def machine_busy_seconds():
    """CPU time spent on anything but idle/iowait, all cores, from /proc/stat."""
    values = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    return (sum(values[:8]) - values[3] - values[4]) / os.sysconf("SC_CLK_TCK")


class CpuMeter:
    """Where the CPU went during one measured run: the supervisor process, its
    workers, and the whole machine (wrk included), in µs per request."""

    def __init__(self, server_pid, worker_pids):
        """`worker_pids`: a callable returning the pids of the workers alive now."""
        self.server_pid, self.list_workers = server_pid, worker_pids

    def worker_pids(self):
        try:
            return set(self.list_workers())
        except Exception:
            return set()

    def start(self):
        self.pids = self.worker_pids()
        self.before = {p: cpu_seconds(p) or 0.0 for p in self.pids}
        self.faults_before = {p: minor_faults(p) or 0 for p in self.pids}
        self.server_before = cpu_seconds(self.server_pid)
        self.reaped_before = cpu_seconds(self.server_pid, reaped_children=True)
        self.reaped_faults_before = minor_faults(self.server_pid, reaped_children=True) or 0
        self.busy = machine_busy_seconds()

    def stop(self, requests):
        busy = machine_busy_seconds() - self.busy
        # Workers are the supervisor's children: one that exited during the run
        # (evicted, crashed) is in its reaped-children total, whole; only its
        # CPU from before the run is taken off.
        workers = cpu_seconds(self.server_pid, reaped_children=True) - self.reaped_before
        faults = (minor_faults(self.server_pid, reaped_children=True) or 0) - self.reaped_faults_before
        for p in self.pids | self.worker_pids():
            now, now_faults = cpu_seconds(p), minor_faults(p)
            workers += (now - self.before.get(p, 0.0)) if now is not None else -self.before.get(p, 0.0)
            faults += (now_faults - self.faults_before.get(p, 0)) if now_faults is not None else 0
        per = lambda s: 1e6 * s / max(requests, 1)
        return {"supervisor_us": per(cpu_seconds(self.server_pid) - self.server_before),
                "workers_us": per(workers), "machine_us": per(busy),
                "worker_faults_per_request": faults / max(requests, 1)}


class StoreMeter:
    """The machine's CPU per request, and a database's: the server process
    `pid` and its children, alive or reaped (PostgreSQL's backends)."""

    def __init__(self, pid):
        self.pid = pid

    def cpu(self):
        children = [int(d.name) for d in Path("/proc").iterdir()
                    if d.name.isdigit() and (stat_fields(d.name) or [None, None])[1] == str(self.pid)]
        own = (cpu_seconds(self.pid) or 0.0) + (cpu_seconds(self.pid, reaped_children=True) or 0.0)
        return own + sum(cpu_seconds(c) or 0.0 for c in children)

    def start(self):
        self.before, self.busy = self.cpu(), machine_busy_seconds()

    def stop(self, requests):
        per = lambda s: 1e6 * s / max(requests, 1)
        return {"machine_us": per(machine_busy_seconds() - self.busy), "store_us": per(self.cpu() - self.before)}


def wrk(url, method="GET", body=BODY, lua=None, meter=None, connections=CONNECTIONS):
    script = lua or lua_file(LUA_FIXED.format(method=method, body=json.dumps(body.decode())))
    base = ["wrk", "-t1", f"-c{connections}", "--latency", "-s", script]
    subprocess.run(base[:3] + [f"-d{WARMUP}s", "-s", script, url], capture_output=True)  # warm-up, discarded
    if meter:
        meter.start()
    busy = machine_busy_seconds()
    out = subprocess.run(base + [f"-d{DURATION}s", url], capture_output=True, text=True).stdout
    busy = machine_busy_seconds() - busy
    if not re.search(r"(\d+) requests in", out):
        raise RuntimeError(f"wrk did not report: {out[-500:]!r}")
    requests = int(re.search(r"(\d+) requests in", out).group(1))
    cpu = meter.stop(requests) if meter else {"machine_us": 1e6 * busy / max(requests, 1)}
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    # The latency distribution's own lines: the thread stats above them end in a
    # percentage too ("+/- Stdev", e.g. 75.50%), which an unanchored "50%" matches.
    p50 = to_ms(re.search(r"^\s*50%\s+(\S+)", out, re.M).group(1))
    p99 = to_ms(re.search(r"^\s*99%\s+(\S+)", out, re.M).group(1))
    non2xx = int((re.search(r"Non-2xx or 3xx responses: (\d+)", out) or [0, 0])[1])
    # A match object takes one group index, not a slice: sum its groups.
    errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    sock = sum(int(x) for x in errors.groups()) if errors else 0
    return {"rps": rps, "p50_ms": p50, "p99_ms": p99, "errors": non2xx + sock, **cpu}


# ---------------------------------------------------------------- floors

def process_hop(target):
    """CPU and wall time of one round trip between two processes over a
    socketpair: free to run on both cores (as polyfaas's are), and pinned to one."""
    def run(prefix):
        out = subprocess.run([*prefix, str(target / "bench-process-hop"), "100000"], capture_output=True, text=True,
                             check=True).stdout.split()
        return {"round_trips_per_s": float(out[0]), "wall_us": float(out[1]), "cpu_us": float(out[2])}
    return {"two_cores": run([]), "one_core": run(["taskset", "-c", "0"])}


def page_fault(target):
    """CPU of one page of a fresh instance's memory: its first write (a fault
    that allocates and zeroes it) and its release by madvise(MADV_DONTNEED)."""
    out = subprocess.run([str(target / "bench-page-fault"), "100000"], capture_output=True, text=True,
                         check=True).stdout.split()
    return {"pages_per_s": float(out[0]), "cpu_us": float(out[1])}
