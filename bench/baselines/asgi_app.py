# Baseline: the same Python handler as an ASGI app, served by uvicorn[standard].
# Env: HANDLER (path), FUNCTION (name).
import os
from urllib.parse import parse_qsl

from ctx_py import Ctx, load_handler

handler = load_handler(os.environ["HANDLER"])
NAME = os.environ.get("FUNCTION", "python")


async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    body = b""
    more = True
    while more:
        message = await receive()
        body += message.get("body", b"")
        more = message.get("more_body", False)
    headers = {k.decode().lower(): v.decode() for k, v in scope["headers"]}
    query = dict(parse_qsl(scope["query_string"].decode()))
    ctx = Ctx(NAME, scope["method"], scope["path"], query, headers, body.decode())
    status, out_headers, out = ctx.finish(handler(ctx))
    await send({"type": "http.response.start", "status": status,
                "headers": [(k.encode(), v.encode()) for k, v in out_headers.items()]})
    await send({"type": "http.response.body", "body": out})
