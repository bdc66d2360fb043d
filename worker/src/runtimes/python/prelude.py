# The ctx API for Python handlers (the README's "Scripts: the `ctx` API"), built over
# the JSON envelopes of runtimes/script.rs. Runs in its own namespace before any
# user code; the host keeps `invoke`, nothing here is visible to the handler.
import json as _json
import sys as _sys
import traceback as _traceback


class _Capture:
    """sys.stdout/sys.stderr for one invocation, capped (no unbounded buffering)."""

    def __init__(self, cap):
        self.parts, self.size, self.cap, self.overflow = [], 0, cap, False

    def write(self, s):
        s = str(s)
        if not self.overflow:
            room = self.cap - self.size
            if len(s) > room:
                s, self.overflow = s[:room], True
            self.parts.append(s)
            self.size += len(s)
        return len(s)

    def flush(self):
        pass

    def text(self):
        return "".join(self.parts)


class Request:
    __slots__ = ("_r",)

    def __init__(self, r):
        self._r = r

    def getParam(self, name):
        if name == "name":
            return self._r["function"]
        return self._r["query"].get(name)

    def getHeader(self, name):
        return self._r["headers"].get(str(name).lower())

    def method(self):
        return self._r["method"]

    def path(self):
        return self._r["path"]


class Response:
    __slots__ = ("_res",)

    def __init__(self, res):
        self._res = res

    def setStatusCode(self, n):
        self._res["status"] = int(n)
        return self

    def putHeader(self, k, v):
        self._res["headers"].append([str(k), str(v)])
        return self

    def end(self, text=None):
        self._res["body"] = "" if text is None else str(text)
        self._res["ended"] = True
        return self


# One encoder for every call: json.dumps with arguments builds a new one each time.
_dumps = _json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode


class Ctx:
    __slots__ = ("_r", "_res", "_request", "_response")

    def __init__(self, r, res):
        self._r, self._res = r, res
        self._request, self._response = Request(r), Response(res)

    def request(self):
        return self._request

    def response(self):
        return self._response

    def body(self):
        return self._r["body"]

    def bodyAsJson(self):
        try:
            return _json.loads(self._r["body"])
        except Exception:
            return None

    def json(self, value):
        self._res["headers"].append(["content-type", "application/json"])
        self._res["body"] = _dumps(value)
        self._res["ended"] = True


def set_env(pairs_json):
    """The function's own environment (metadata.json `env`), and nothing else."""
    import os
    os.environ.clear()
    os.environ.update(_json.loads(pairs_json))


def invoke(handler, envelope, log_cap):
    """Runs the handler once; returns JSON: {response, error, trace, logs, logsOverflow}."""
    capture = _Capture(log_cap)
    saved = _sys.stdout, _sys.stderr
    _sys.stdout = _sys.stderr = capture
    out = {"response": None, "error": None, "trace": None}
    try:
        r = _json.loads(envelope)
        res = {"ended": False, "status": 200, "headers": [], "body": None}
        value = handler(Ctx(r, res))
        res["value"] = value
        res["isString"] = isinstance(value, str)
        out["response"] = res
    except BaseException as e:  # SystemExit and the deadline's KeyboardInterrupt too
        out["error"], out["trace"] = "%s: %s" % (type(e).__name__, e), _traceback.format_exc()
    finally:
        _sys.stdout, _sys.stderr = saved
    out["logs"], out["logsOverflow"] = capture.text(), capture.overflow
    try:
        return _dumps(out)
    except BaseException as e:  # what the handler returned is not JSON
        out["response"], out["error"], out["trace"] = None, "%s: %s" % (type(e).__name__, e), None
        return _dumps(out)
