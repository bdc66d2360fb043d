"""The process-pool baseline a user would pick instead of polyfaas: nginx in
front of PHP-FPM (Debian's packages), FastCGI over a Unix socket, a static pool
of 8 PHP processes (polyfaas's default of 8 running workers), running the same
trivial handler (bench/handlers/original.php). One FastCGI connection per
request, as Debian's snippets/fastcgi-php.conf does: with kept-alive upstream
connections each idle one pins an FPM child, and requests stall behind them. Debian's own php.ini for FPM,
with OPcache as it ships. Both run as nobody when the bench runs as root."""

import glob
import os
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
import nginx  # noqa: E402  (bench/nginx.py)

PACKAGES = ("php-fpm", "nginx-light")


def install(as_root, sh):
    missing = [p for p in PACKAGES
               if subprocess.run(["dpkg", "-s", p], capture_output=True).returncode != 0
               and not (p == "nginx-light" and Path("/usr/sbin/nginx").exists())]
    if missing:
        sh(as_root(["env", "DEBIAN_FRONTEND=noninteractive", "apt-get", "install", "-y", "-qq", *missing]),
           stdout=subprocess.DEVNULL)


def start(procs, tmp, port, handler, workers=8):
    """Starts PHP-FPM and nginx under `tmp`; returns nginx's URL."""
    d = tmp / "php-fpm"
    d.mkdir()
    d.chmod(0o755)
    script = d / "handler.php"
    script.write_text(Path(handler).read_text())
    root = os.geteuid() == 0
    user = "user = nobody\ngroup = nogroup\nlisten.owner = nobody\nlisten.group = nogroup\n" if root else ""
    (d / "php-fpm.conf").write_text(
        f"[global]\npid = {d}/php-fpm.pid\nerror_log = {d}/php-fpm.log\ndaemonize = no\n\n"
        f"[bench]\n{user}listen = {d}/php-fpm.sock\nlisten.mode = 0660\nlisten.backlog = 4096\n"
        f"pm = static\npm.max_children = {workers}\npm.max_requests = 0\n")
    fpm = sorted(glob.glob("/usr/sbin/php-fpm*"))[-1]
    # procs.start waits for a TCP port; FPM listens on a socket, so nginx's port is
    # the one waited for, and FPM gets its own short wait here.
    fpm_proc = subprocess.Popen([fpm, "--nodaemonize", "--fpm-config", str(d / "php-fpm.conf")],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    procs.procs.append(fpm_proc)
    for _ in range(200):
        if (d / "php-fpm.sock").exists():
            break
        if fpm_proc.poll() is not None:
            raise RuntimeError(f"php-fpm exited: {(d / 'php-fpm.log').read_text(errors='replace')[-500:]}")
        time.sleep(0.05)
    nginx.start(procs, d, port, workers="auto", http=(
        f"server {{ listen 127.0.0.1:{port}; location / {{ include /etc/nginx/fastcgi_params; "
        f"fastcgi_param SCRIPT_FILENAME {script}; fastcgi_pass unix:{d}/php-fpm.sock; }} }}"))
    return f"http://127.0.0.1:{port}/"
