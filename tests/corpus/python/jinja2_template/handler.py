# Jinja2 (and markupsafe): a template read from the bundle's own file, with
# autoescaping, filters, macros and inheritance.
from jinja2 import Environment, FileSystemLoader, select_autoescape

env = Environment(loader=FileSystemLoader("templates"), autoescape=select_autoescape(["html"]))
env.filters["money"] = lambda cents: "%d.%02d" % divmod(int(cents), 100)


def handler(ctx):
    order = ctx.bodyAsJson()
    html = env.get_template("order.html").render(order=order, title="Order <%s>" % order["id"])
    ctx.json({"html": html})
