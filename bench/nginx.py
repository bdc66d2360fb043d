"""nginx for the bench, run from a temp dir as the bench's own process: the
multi-node row's balancer (bench/multinode.py) and the PHP-FPM baseline's front
(bench/baselines/php_fpm.py). Workers run as nobody when the bench runs as root."""

import os


def start(procs, d, port, http, workers="1"):
    """Writes `d`/nginx.conf around the `http` block's own directives and starts
    nginx with it; waits until `port` accepts."""
    user = "user nobody nogroup;" if os.geteuid() == 0 else ""
    (d / "nginx.conf").write_text(
        f"{user}\ndaemon off;\nworker_processes {workers};\npid {d}/nginx.pid;\nerror_log {d}/error.log warn;\n"
        f"events {{ worker_connections 4096; }}\nhttp {{ access_log off; client_body_temp_path {d}/body; "
        f"proxy_temp_path {d}/proxy; fastcgi_temp_path {d}/fcgi; uwsgi_temp_path {d}/uwsgi; "
        f"scgi_temp_path {d}/scgi;\n{http}\n}}\n")
    procs.start(["/usr/sbin/nginx", "-p", str(d), "-c", str(d / "nginx.conf")], port)
