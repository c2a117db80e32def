"""Small latency statistics for the test scripts (no third-party imports)."""

from __future__ import annotations

import math
import threading
from typing import Dict, List, Optional, Sequence


def percentile(samples: Sequence[float], p: float) -> Optional[float]:
    """Nearest-rank percentile (p in 0..100); ``None`` for no samples."""
    if not samples:
        return None
    if not 0 <= p <= 100:
        raise ValueError("percentile must be within 0..100")
    ordered = sorted(samples)
    rank = max(1, math.ceil(p / 100 * len(ordered)))
    return ordered[rank - 1]


def legs_ms(begin_ns: int, produced_ns: int, end_ns: int) -> Dict[str, float]:
    """The seed's three figures, in ms, from wall-clock epoch-ns timestamps.

    C->P = produced - begin, P->C = end - produced, Total = end - begin.
    """
    return {
        "c2p_ms": (produced_ns - begin_ns) / 1e6,
        "p2c_ms": (end_ns - produced_ns) / 1e6,
        "total_ms": (end_ns - begin_ns) / 1e6,
    }


def _round(value: Optional[float]) -> Optional[float]:
    return None if value is None else round(value, 4)


class KindStats:
    """Outcome counts and leg latencies for one exchange kind (method or message).

    Thread-safe: the consumer's loops record while the main thread may read.
    """

    LEGS = ("c2p", "p2c", "total")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.timeouts = 0
        self.errors = 0
        self.late = 0  # replies that arrived after their exchange had timed out
        self._samples: Dict[str, List[float]] = {leg: [] for leg in self.LEGS}

    def ok(self, c2p_ms: float, p2c_ms: float, total_ms: float) -> None:
        with self._lock:
            self._samples["c2p"].append(c2p_ms)
            self._samples["p2c"].append(p2c_ms)
            self._samples["total"].append(total_ms)

    def timeout(self) -> None:
        with self._lock:
            self.timeouts += 1

    def error(self) -> None:
        with self._lock:
            self.errors += 1

    def late_reply(self) -> None:
        with self._lock:
            self.late += 1

    @property
    def count(self) -> int:
        with self._lock:
            return len(self._samples["total"])

    def summary(self) -> Dict[str, object]:
        """``count/timeouts/errors`` plus min/avg/max per leg (``None`` when empty)."""
        with self._lock:
            out: Dict[str, object] = {
                "count": len(self._samples["total"]),
                "timeouts": self.timeouts,
                "errors": self.errors,
                "late": self.late,
            }
            for leg in self.LEGS:
                xs = self._samples[leg]
                out["min_{}_ms".format(leg)] = _round(min(xs)) if xs else None
                out["avg_{}_ms".format(leg)] = _round(sum(xs) / len(xs)) if xs else None
                out["max_{}_ms".format(leg)] = _round(max(xs)) if xs else None
            totals = self._samples["total"]
            out["p50_total_ms"] = _round(percentile(totals, 50))
            out["p99_total_ms"] = _round(percentile(totals, 99))
            return out
