""".NET round-trip ("O") timestamps with 100 ns resolution.

The seed's modules exchange times as .NET round-trip UTC strings such as
``2019-06-19T19:32:16.4161739Z``: seven fractional digits, one tick = 100 ns.
Python's ``datetime`` stops at microseconds, so times are carried as integer
nanoseconds since the Unix epoch (``time.time_ns()``) and converted here.

Parsing is deliberately lenient, like ``DateTime.Parse`` in the seed consumer:
Newtonsoft.Json (the seed producer's serializer) trims trailing zeros of the
fraction (``...:16.41Z``, or no fraction at all), other producers may send
``+00:00`` instead of ``Z``, and a missing zone is taken as UTC.

No third-party imports: this module is tested with plain ``python -m unittest``.
"""

from __future__ import annotations

import calendar
import datetime as _dt
import re
import time

_NS_PER_S = 1_000_000_000
_NS_PER_TICK = 100

_ROUNDTRIP = re.compile(
    r"^(?P<y>\d{4})-(?P<mo>\d{2})-(?P<d>\d{2})"
    r"T(?P<h>\d{2}):(?P<mi>\d{2}):(?P<s>\d{2})"
    r"(?:\.(?P<frac>\d{1,9}))?"
    r"(?P<tz>[Zz]|[+-]\d{2}:?\d{2})?$"
)


def now_ns() -> int:
    """Current wall-clock time in ns since the epoch (UTC)."""
    return time.time_ns()


def format_roundtrip(ns: int) -> str:
    """Format epoch nanoseconds as .NET ``DateTime.UtcNow.ToString("O")``.

    Always seven fractional digits and ``Z``; sub-tick nanoseconds are truncated,
    as .NET's clock has no finer resolution.
    """
    seconds, rem = divmod(ns, _NS_PER_S)
    whole = _dt.datetime.fromtimestamp(seconds, _dt.timezone.utc)
    return "{}.{:07d}Z".format(whole.strftime("%Y-%m-%dT%H:%M:%S"), rem // _NS_PER_TICK)


def parse_roundtrip(text: str) -> int:
    """Parse an ISO-8601 round-trip timestamp into epoch nanoseconds (UTC).

    Accepts 0-9 fractional digits and ``Z``/``z``, ``+hh:mm``/``+hhmm`` or no zone
    (taken as UTC). Raises ``ValueError`` on anything else.
    """
    if not isinstance(text, str):
        raise ValueError("timestamp must be a string, got {!r}".format(type(text).__name__))
    m = _ROUNDTRIP.match(text.strip())
    if m is None:
        raise ValueError("not a round-trip timestamp: {!r}".format(text))
    fields = [int(m.group(k)) for k in ("y", "mo", "d", "h", "mi", "s")]
    _dt.datetime(*fields)  # range check (month 13, Feb 30, second 60, ...) -> ValueError
    seconds = calendar.timegm(tuple(fields) + (0, 0, 0))
    tz = m.group("tz")
    if tz and tz not in ("Z", "z"):
        sign = -1 if tz[0] == "-" else 1
        digits = tz[1:].replace(":", "")
        offset = int(digits[:2]) * 3600 + int(digits[2:]) * 60
        seconds -= sign * offset  # local = UTC + offset
    frac = (m.group("frac") or "").ljust(9, "0")
    return seconds * _NS_PER_S + int(frac)


def ns_to_ms(ns: int) -> float:
    """Nanoseconds -> milliseconds (float), the unit the seed reports in."""
    return ns / 1_000_000
