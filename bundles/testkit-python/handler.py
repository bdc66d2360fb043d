# The test suite's Python guest: the request body picks the behaviour, the same
# actions as the JavaScript and Ruby testkits.
import json

counter = 0


def recurse(n):
    return recurse(n + 1) + 1


def _fork(_):
    import os
    pid = os.fork()
    if pid == 0:
        os._exit(0)
    return pid


def _spawn(_):
    import subprocess
    return subprocess.run(["/bin/true"]).returncode


def _connect(data):
    import socket
    socket.create_connection(("127.0.0.1", int(data["port"])), timeout=2).close()
    return "connected"


def _kill_parent(_):
    import os
    os.kill(os.getppid(), 9)
    return "signalled"


def _write(data):
    with open(data["path"], "w") as f:
        f.write("pwned")
    return "written"


def _env(_):
    import os
    return dict(os.environ)


# Hostile actions for tests/tests/hostile.rs: each tries something the sandbox must refuse.
ATTACKS = {
    "readFile": lambda data: len(open(data["path"]).read()),
    "writeFile": _write,
    "connect": _connect,
    "fork": _fork,
    "spawn": _spawn,
    "killParent": _kill_parent,
    "env": _env,
}


def handler(ctx):
    global counter
    data = ctx.bodyAsJson() or {}
    action = data.get("action")
    if action == "plain":
        return {"plain": True, "n": data.get("n")}
    if action == "text":
        return "just text"
    if action == "status":
        ctx.response().setStatusCode(201).putHeader("X-Custom", "yes").end("created")
        return None
    if action == "echo":
        ctx.json(data)
        return None
    if action == "throw":
        raise ValueError("testkit threw " + str(data.get("message")))
    if action == "log":
        print(data.get("text"))
        return {"logged": True}
    if action == "setGlobal":
        globals()["shared_value"] = data.get("value")
        return {"set": True}
    if action == "getGlobal":
        return {"value": globals().get("shared_value")}
    if action == "count":
        counter += 1
        return {"counter": counter}
    if action == "params":
        r = ctx.request()
        return {"name": r.getParam("name"), "q": r.getParam("q"), "header": r.getHeader("X-Test"),
                "method": r.method(), "path": r.path()}
    if action == "bodyLength":
        return {"length": len(ctx.body())}
    if action == "spin":
        while True:
            pass
    if action == "recurse":
        return recurse(0)
    if action == "alloc":
        keep = []
        while True:
            keep.append(bytearray(1 << 20))
    if action == "flood":
        line = "x" * (1 << 16)
        for _ in range(int(data.get("bytes", 100 << 20)) // len(line)):
            print(line)
        return {"flooded": True}
    if action in ATTACKS:
        try:
            return {"ok": True, "result": ATTACKS[action](data)}
        except BaseException as e:  # a refused attack is an exception of some kind
            return {"ok": False, "error": "%s: %s" % (type(e).__name__, e)}
    if action == "stdlib":
        import base64, collections, datetime, functools, hashlib, itertools, math, random, re, string, time
        return {
            "json": json.dumps({"a": [1, 2]}),
            "re": re.sub(r"\d+", "#", "a1b22"),
            "math": math.sqrt(16),
            "datetime": datetime.date(2024, 2, 29).isoformat(),
            "base64": base64.b64encode(b"hi").decode(),
            "hashlib": hashlib.sha256(b"abc").hexdigest()[:8],
            "random": 0 <= random.random() < 1,
            "collections": collections.Counter("aab")["a"],
            "itertools": list(itertools.islice(itertools.count(), 3)),
            "functools": functools.reduce(lambda a, b: a + b, [1, 2, 3]),
            "string": string.ascii_lowercase[:3],
            "time": time.time() > 0,
        }
    return {"unknown": action}


handler
