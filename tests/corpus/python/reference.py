"""The reference for the Python corpus: runs a bundle's handler on CPython 3.11
with a minimal ctx (the README's API), as polyfaas would: the working directory
is the bundle, sys.path is the bundle and its vendor/, os.environ is the
metadata.json env plus HOME=/nonexistent.

Usage: python3 reference.py BUNDLE_DIR VENDOR_DIR < request.json
request.json: {"method", "path", "query", "headers": [[name, value]], "body"}
Prints {"status", "headers", "body"} as JSON."""
import json
import os
import sys
from urllib.parse import parse_qsl

if sys.version_info[:2] != (3, 11):
    sys.exit("the reference is CPython 3.11, this is %s" % sys.version.split()[0])

bundle, vendor = sys.argv[1], os.path.abspath(sys.argv[2])
request = json.load(sys.stdin)
os.chdir(bundle)
metadata = json.load(open("metadata.json"))
os.environ.clear()
os.environ.update({"HOME": "/nonexistent", **metadata.get("env", {})})
sys.path[:] = [".", vendor] + [p for p in sys.path[1:] if "site-packages" not in p]


class Request:
    def getParam(self, name):
        return dict(parse_qsl(request["query"])).get(name)

    def getHeader(self, name):
        return next((v for k, v in request["headers"] if k == name.lower()), None)

    def method(self):
        return request["method"]

    def path(self):
        return request["path"]

    def query(self):
        return request["query"]

    def headers(self):
        return [tuple(h) for h in request["headers"]]


class Ctx:
    def __init__(self):
        self.out = {"status": 200, "headers": [], "body": None}

    def request(self):
        return Request()

    def body(self):
        return request["body"]

    def bodyBytes(self):
        return request["body"].encode()

    def bodyAsJson(self):
        return json.loads(request["body"])

    def json(self, value):
        self.out["headers"].append(["content-type", "application/json"])
        self.out["body"] = json.dumps(value, ensure_ascii=False, separators=(",", ":"))


namespace = {"__name__": "handler", "__file__": metadata["entrypointFile"]}
exec(compile(open(metadata["entrypointFile"]).read(), metadata["entrypointFile"], "exec"), namespace)
ctx = Ctx()
namespace["handler"](ctx)
print(json.dumps(ctx.out))
