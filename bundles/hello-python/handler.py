# A Python handler that imports a helper module from its own bundle.
from greet import greet


def handler(ctx):
    greeting = ctx.request().getHeader("x-greeting")
    print("hello-python: greeting", greeting)
    ctx.json({
        "msg": greet(ctx.request().getParam("name")),
        "greeting": greeting,
        "input": ctx.bodyAsJson() or {},
        "method": ctx.request().method(),
        "path": ctx.request().path(),
    })


handler
