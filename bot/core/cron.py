"""Standard crontab text as APScheduler triggers (pure: no settings, no I/O).

Settings validate their crontabs with it and the worker builds its triggers with it, so it
sits below both.
"""

from __future__ import annotations

from typing import Any
from zoneinfo import ZoneInfo

from apscheduler.triggers.cron import CronTrigger

_DOW_NAMES = ("sun", "mon", "tue", "wed", "thu", "fri", "sat", "sun")


def _standard_day_of_week(field: str) -> str:
    """Standard crontab weekday numbers (0 or 7 = Sunday) as names.

    APScheduler 3 reads 0 as Monday (its documented "historical mistake"), so `0 9 * * 1`
    would silently run on Tuesdays. Names mean the same to both; steps stay numbers.
    """

    def name(piece: str) -> str:
        if not piece.isdigit():
            return piece
        if int(piece) > 7:
            raise ValueError(f"day of week {piece} is out of range (0-7; 0 and 7 are Sunday)")
        return _DOW_NAMES[int(piece)]

    parts = []
    for part in field.split(","):
        base, slash, step = part.partition("/")
        if base == "*" and step.isdigit():  # "*/2" counts from Sunday in a crontab
            parts.append(",".join(dict.fromkeys(_DOW_NAMES[i] for i in range(0, 7, max(1, int(step))))))
            continue
        low, dash, high = base.partition("-")
        if dash and low == "0" and high.isdigit():
            # Sunday first: APScheduler's weeks start on Monday, so "0-5" is "sun,mon-fri".
            if slash:
                raise ValueError(f"write day-of-week {part!r} with names (e.g. sun,tue,thu)")
            parts.append("sun" if high == "0" else f"sun,mon-{name(high)}")
            continue
        text = f"{name(low)}-{name(high)}" if dash else name(low)
        parts.append(text + (slash + step if slash else ""))
    return ",".join(parts)


def cron_trigger(expr: str, timezone: str | Any) -> CronTrigger:
    """A trigger from a standard 5-field crontab (`min hour day month weekday`)."""
    fields = expr.split()
    if len(fields) != 5:
        raise ValueError(f"a crontab has 5 fields (minute hour day month weekday), got {len(fields)}: {expr!r}")
    minute, hour, day, month, dow = fields
    zone = ZoneInfo(timezone) if isinstance(timezone, str) else timezone
    values = {"minute": minute, "hour": hour, "day": day, "month": month, "day_of_week": _standard_day_of_week(dow)}
    try:
        return CronTrigger(**values, timezone=zone)
    except ValueError as exc:
        for name, text in values.items():  # say which field APScheduler refused
            try:
                CronTrigger(**{name: text}, timezone=zone)
            except ValueError as field_error:
                raise ValueError(f"{name.replace('_', ' ')} field {text!r} in {expr!r}: {field_error}") from None
        raise ValueError(f"{expr!r}: {exc}") from None


