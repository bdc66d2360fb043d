# The ctx shim the CPython baselines give the handler: the same API as polyfaas.
import json


class Ctx:
    def __init__(self, name, method, path, query, headers, body):
        self._name, self._method, self._path, self._query, self._headers, self._body = name, method, path, query, headers, body
        self.status, self.headers, self.out = 200, {}, None

    def request(self):
        return self

    def getParam(self, n):
        return self._name if n == "name" else self._query.get(n)

    def getHeader(self, n):
        return self._headers.get(n.lower())

    def method(self):
        return self._method

    def path(self):
        return self._path

    def response(self):
        return self

    def setStatusCode(self, n):
        self.status = n
        return self

    def putHeader(self, k, v):
        self.headers[k] = v
        return self

    def end(self, t=None):
        self.out = "" if t is None else str(t)
        return self

    def body(self):
        return self._body

    def bodyAsJson(self):
        try:
            return json.loads(self._body)
        except ValueError:
            return None

    def json(self, v):
        self.headers["content-type"] = "application/json"
        self.out = json.dumps(v, separators=(",", ":"))

    def finish(self, value):
        if self.out is None:
            self.out = value if isinstance(value, str) else json.dumps(value, separators=(",", ":"))
            self.headers.setdefault("content-type", "application/json")
        return self.status, self.headers, self.out.encode()


def load_handler(path):
    scope = {}
    source = open(path).read()
    exec(compile(source, path, "exec"), scope)
    return scope["handler"]
