# tabulate: the same rows in several table formats.
from tabulate import tabulate


def handler(ctx):
    rows = ctx.bodyAsJson()["rows"]
    headers = ["name", "language", "stars", "ratio"]
    ctx.json({fmt: tabulate(rows, headers=headers, tablefmt=fmt, floatfmt=".3f")
              for fmt in ("plain", "grid", "github", "html", "rst")})
