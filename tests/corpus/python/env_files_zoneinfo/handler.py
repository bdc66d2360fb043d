# The environment a function may rely on: its metadata.json env (read at the top
# level, which the upload's dry run also runs), its own files by relative path,
# HOME, a bundle module importable, zoneinfo, and pwd's KeyError for unknown users.
import os
import pwd
from datetime import datetime
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import helpers

GREETING = os.environ["GREETING"]
with open("data/words.txt") as f:
    WORDS = f.read().split()


def handler(ctx):
    try:
        pwd.getpwnam("no-such-user-polyfaas")
        lookup = "found"
    except KeyError:
        lookup = "KeyError"
    try:
        ZoneInfo("Not/AZone")
        missing = "found"
    except ZoneInfoNotFoundError:
        missing = "ZoneInfoNotFoundError"
    when = datetime(2024, 7, 1, 12, 0, tzinfo=ZoneInfo("UTC"))
    ctx.json({
        "greeting": helpers.shout(GREETING),
        "words": WORDS,
        "home": os.environ.get("HOME"),
        "expanded": os.path.expanduser("~/x"),
        "unknownUser": lookup,
        "berlin": when.astimezone(ZoneInfo("Europe/Berlin")).isoformat(),
        "sydney": when.astimezone(ZoneInfo("Australia/Sydney")).isoformat(),
        "missingZone": missing,
        "body": ctx.bodyBytes().hex(),
        "query": ctx.request().query(),
    })
