"""Five-field cron expressions: parsed once, checked when a config is loaded, rendered by ops/schedule.py.

Fields: minute hour day-of-month month day-of-week, with `*`, numbers, names (jan, mon), lists
`a,b`, ranges `a-b` and steps `*/n`, `a-b/n`, or one of @hourly @daily @midnight @weekly @monthly
@yearly @annually.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

# (name, low, high, names for low..) of the five cron fields
_FIELDS = [("minute", 0, 59, None), ("hour", 0, 23, None), ("day-of-month", 1, 31, None),
           ("month", 1, 12, ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"]),
           ("day-of-week", 0, 7, ["sun", "mon", "tue", "wed", "thu", "fri", "sat"])]
_MACROS = {"@hourly": "0 * * * *", "@daily": "0 0 * * *", "@midnight": "0 0 * * *", "@weekly": "0 0 * * 0",
           "@monthly": "0 0 1 * *", "@yearly": "0 0 1 1 *", "@annually": "0 0 1 1 *"}
_ITEM = re.compile(r"^(?P<range>\*|[a-z0-9]+(?:-[a-z0-9]+)?)(?:/(?P<step>\d+))?$")


@dataclass(frozen=True)
class Cron:
    """A parsed expression: the values each field allows, and which fields were restricted (not `*`)."""

    expression: str
    fields: tuple[tuple[int, ...], ...]  # (minute, hour, day-of-month, month, day-of-week), sorted values
    restricted: tuple[bool, ...]

    @property
    def minute(self): return self.fields[0]

    @property
    def hour(self): return self.fields[1]

    @property
    def day_of_month(self): return self.fields[2]

    @property
    def month(self): return self.fields[3]

    @property
    def day_of_week(self): return self.fields[4]  # 0 = Sunday (cron's 7 folded into 0)


def parse_cron(expression: str) -> Cron:
    """Parse a five-field cron expression; ValueError naming the field and the accepted forms."""
    text = " ".join(str(expression).lower().split())
    text = _MACROS.get(text, text)
    if text.startswith("@"):
        raise ValueError(f"cron {expression!r}: unsupported macro; use one of {', '.join(_MACROS)} or five fields")
    parts = text.split(" ")
    if len(parts) != 5:
        raise ValueError(f"cron {expression!r}: expected five fields (minute hour day-of-month month "
                         f"day-of-week), e.g. '30 2 * * *', got {len(parts)}")
    fields, restricted = [], []
    for part, (name, low, high, names) in zip(parts, _FIELDS):
        values = set()
        for item in part.split(","):
            values |= _expand(item, name, low, high, names, expression)
        if name == "day-of-week" and 7 in values:  # 7 is Sunday too
            values = (values - {7}) | {0}
        fields.append(tuple(sorted(values)))
        restricted.append(part != "*")
    return Cron(expression, tuple(fields), tuple(restricted))


def _expand(item: str, name: str, low: int, high: int, names: list[str] | None, expression: str) -> set[int]:
    match = _ITEM.match(item)
    if not match:
        raise ValueError(f"cron {expression!r}: {name} item {item!r} is not supported; use *, N, A-B, */N, "
                         "A-B/N or lists of them (L, W, # and ? are not supported)")
    step = int(match["step"]) if match["step"] else 1
    if step < 1:
        raise ValueError(f"cron {expression!r}: {name} step must be at least 1, got {item!r}")
    if match["range"] == "*":
        start, end = low, high if name != "day-of-week" else 6
    else:
        bounds = [_number(b, name, low, high, names, expression) for b in match["range"].split("-")]
        start, end = bounds[0], bounds[-1]
        if match["step"] and len(bounds) == 1:  # "5/15" means 5-max/15, as in cron
            end = high
        if start > end:
            raise ValueError(f"cron {expression!r}: {name} range {item!r} runs backwards; write {end}-{start}")
    return set(range(start, end + 1, step))


def _number(token: str, name: str, low: int, high: int, names: list[str] | None, expression: str) -> int:
    if names and token[:3] in names and not token.isdigit():
        return names.index(token[:3]) + (low if name == "month" else 0)
    if not token.isdigit():
        raise ValueError(f"cron {expression!r}: {name} item {token!r} is not supported; use numbers"
                         + (f", names ({names[0]}..{names[-1]})" if names else "") + " and *, -, /, lists "
                         "(L, W, # and ? are not supported)")
    if not low <= int(token) <= high:
        allowed = f"{low}-{high}" + (f" or {names[0]}..{names[-1]}" if names else "")
        raise ValueError(f"cron {expression!r}: {name} value {token!r} is out of range; allowed {allowed}")
    return int(token)
