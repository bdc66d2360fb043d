# The original project's JavaScript example, in Python: run by polyfaas and by
# the CPython baselines alike.
def handler(ctx):
    ctx.json({"msg": "Hello from " + ctx.request().getParam("name")})


handler
