# Baseline floor: the same Python handler on CPython's ThreadingHTTPServer.
# Usage: python3 threading_server.py <handler.py> <port> <function-name>
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qsl, urlsplit

from ctx_py import Ctx, load_handler

handler = load_handler(sys.argv[1])
NAME = sys.argv[3]


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def serve(self):
        length = int(self.headers.get("content-length") or 0)
        body = self.rfile.read(length).decode() if length else ""
        url = urlsplit(self.path)
        headers = {k.lower(): v for k, v in self.headers.items()}
        ctx = Ctx(NAME, self.command, url.path, dict(parse_qsl(url.query)), headers, body)
        status, out_headers, out = ctx.finish(handler(ctx))
        self.send_response(status)
        for k, v in out_headers.items():
            self.send_header(k, v)
        self.send_header("content-length", str(len(out)))
        self.end_headers()
        self.wfile.write(out)

    do_GET = do_POST = serve

    def log_message(self, *args):
        pass


ThreadingHTTPServer(("127.0.0.1", int(sys.argv[2])), Handler).serve_forever()
