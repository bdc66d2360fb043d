# python-dateutil (and six): parsing, relative deltas, recurrence rules and time
# zones from its own bundled database.
from datetime import datetime

from dateutil import parser, rrule, tz
from dateutil.relativedelta import relativedelta


def handler(ctx):
    texts = ctx.bodyAsJson()["dates"]
    parsed = [parser.parse(t, dayfirst=False) for t in texts]
    start = datetime(2024, 1, 31, 9, 30)
    new_york = tz.gettz("America/New_York")
    tokyo = tz.gettz("Asia/Tokyo")
    meeting = datetime(2024, 3, 10, 12, 0, tzinfo=new_york)
    ctx.json({
        "parsed": [d.isoformat() for d in parsed],
        "plusMonths": [(start + relativedelta(months=n)).isoformat() for n in range(1, 4)],
        "lastFriday": (start + relativedelta(day=31, weekday=rrule.FR(-1))).date().isoformat(),
        "mondays": [d.date().isoformat() for d in rrule.rrule(rrule.WEEKLY, byweekday=rrule.MO, count=4, dtstart=start)],
        "meetingInTokyo": meeting.astimezone(tokyo).isoformat(),
        "newYorkOffsets": [str(datetime(2024, m, 1, tzinfo=new_york).utcoffset()) for m in (1, 7)],
        "fuzzy": parser.parse("Today is January 5, 2025 at 3pm, see you", fuzzy=True).isoformat(),
    })
