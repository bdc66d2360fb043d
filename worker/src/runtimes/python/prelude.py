# The ctx API for Python handlers (the README's "Scripts: the `ctx` API"), built over
# the envelopes of runtimes/script.rs, as dicts (runtimes/python/envelope.rs). Runs in its own namespace before any
# user code; the host keeps `invoke`, nothing here is visible to the handler.
import base64 as _base64
import json as _json
import sys as _sys
import traceback as _traceback

# HOME when the function's env sets none: Debian's name for "this user has no
# home". Never the bundle's real path (that is the store's business) and nothing
# that exists: the sandbox lets nothing be written anyway.
_HOME = "/nonexistent"


class _Capture:
    """sys.stdout/sys.stderr for one invocation, capped (no unbounded buffering)."""
    __slots__ = ("parts", "size", "cap", "overflow")

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

    def query(self):
        return self._r["rawQuery"]

    def headers(self):
        return [(k, v) for k, v in self._r["headerList"]]


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

    # Request and Response are made on first use: a handler that answers with
    # ctx.json never needs the second, and each costs a constructor call.
    def __init__(self, r, res):
        self._r, self._res = r, res
        self._request = self._response = None

    def request(self):
        if self._request is None:
            self._request = Request(self._r)
        return self._request

    def response(self):
        if self._response is None:
            self._response = Response(self._res)
        return self._response

    def body(self):
        return self._r["body"]

    def bodyBytes(self):
        raw = self._r.get("bodyBase64")
        return _base64.b64decode(raw) if raw is not None else self._r["body"].encode("utf-8")

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
    """The function's own environment (metadata.json `env`), and HOME unless it sets one."""
    import os
    env = _json.loads(pairs_json)
    env.setdefault("HOME", _HOME)
    os.environ.clear()
    os.environ.update(env)


def _lookups_fail_like_cpython():
    """The sandbox denies /etc/passwd and /etc/group, so RustPython's pwd and grp
    raise PermissionError; CPython raises KeyError for a user it does not know,
    and code (getpass, expanduser, tarfile) catches exactly that."""
    def not_found(lookup, what, quote):
        def wrapped(arg):
            try:
                return lookup(arg)
            except OSError:
                raise KeyError("%s(): %s not found: %s" % (lookup.__name__, what, repr(arg) if quote else arg)) from None
        wrapped.__name__ = lookup.__name__
        return wrapped

    def nothing(lookup):
        def wrapped():
            try:
                return lookup()
            except OSError:
                return []
        wrapped.__name__ = lookup.__name__
        return wrapped

    for module_name, by_id, by_name, every, what_id in (
        ("pwd", "getpwuid", "getpwnam", "getpwall", "uid"),
        ("grp", "getgrgid", "getgrnam", "getgrall", "gid"),
    ):
        try:
            module = __import__(module_name)
        except ImportError:
            continue
        if hasattr(module, by_id):
            setattr(module, by_id, not_found(getattr(module, by_id), what_id, False))
        if hasattr(module, by_name):
            setattr(module, by_name, not_found(getattr(module, by_name), "name", True))
        if hasattr(module, every):
            setattr(module, every, nothing(getattr(module, every)))


def _zoneinfo_from(tzdb_get, tzdb_names):
    """zoneinfo reads the IANA database the worker carries (the host's
    /usr/share/zoneinfo is outside the sandbox): it stands in for the `tzdata`
    package, which is zoneinfo's own fallback when no TZPATH file exists."""
    import io
    try:
        from zoneinfo import _common, _tzpath
        import zoneinfo
    except ImportError:
        return

    def load_tzdata(key):
        data = tzdb_get(key) if isinstance(key, str) else None
        if data is None:
            raise zoneinfo.ZoneInfoNotFoundError("No time zone found with key %s" % key)
        return io.BytesIO(data)

    original = _tzpath.available_timezones

    def available_timezones():
        return set(tzdb_names) | original()

    _common.load_tzdata = load_tzdata
    _tzpath.available_timezones = zoneinfo.available_timezones = available_timezones


def setup(tzdb_get, tzdb_names):
    """Run once, before any user code."""
    set_env("{}")
    _lookups_fail_like_cpython()
    _zoneinfo_from(tzdb_get, tzdb_names)


def invoke(handler, r, log_cap):
    """Runs the handler once on the request dict `r` (built by the host); returns
    {response, error, trace, logs, logsOverflow}, which the host reads as it is
    (runtimes/python/envelope.rs). A returned value that is not a str becomes its
    JSON text here, by json.dumps's rules, as the body of a plain-style answer."""
    capture = _Capture(log_cap)
    saved = _sys.stdout, _sys.stderr
    _sys.stdout = _sys.stderr = capture
    out = {"response": None, "error": None, "trace": None}
    try:
        res = {"ended": False, "status": 200, "headers": [], "body": None, "valueText": None, "isString": False}
        value = handler(Ctx(r, res))
        if not res["ended"]:
            if isinstance(value, str):
                res["valueText"], res["isString"] = value, True
            else:
                res["valueText"] = _dumps(value)
        out["response"] = res
    except BaseException as e:  # SystemExit, the deadline's KeyboardInterrupt, a value that is not JSON
        out["error"], out["trace"] = "%s: %s" % (type(e).__name__, e), _traceback.format_exc()
    finally:
        _sys.stdout, _sys.stderr = saved
    out["logs"], out["logsOverflow"] = capture.text(), capture.overflow
    return out
