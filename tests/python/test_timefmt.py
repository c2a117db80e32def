"""Unit tests for timefmt (round-trip timestamps) and stats; plain `python -m unittest`.

Run from this directory:  python -m unittest -v test_timefmt
"""

import calendar
import datetime as dt
import os
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from stats import KindStats, legs_ms, percentile  # noqa: E402
from timefmt import format_roundtrip, ns_to_ms, parse_roundtrip  # noqa: E402

# The seed README's example: 2019-06-19T19:32:16.4161739Z
SEED_NS = calendar.timegm((2019, 6, 19, 19, 32, 16, 0, 0, 0)) * 10**9 + 416_173_900


class FormatRoundtrip(unittest.TestCase):
    def test_seed_example(self):
        self.assertEqual(format_roundtrip(SEED_NS), "2019-06-19T19:32:16.4161739Z")

    def test_always_seven_digits(self):
        base = calendar.timegm((2024, 2, 29, 0, 0, 0, 0, 0, 0)) * 10**9
        self.assertEqual(format_roundtrip(base), "2024-02-29T00:00:00.0000000Z")
        self.assertEqual(format_roundtrip(base + 100), "2024-02-29T00:00:00.0000001Z")

    def test_sub_tick_truncated(self):
        self.assertEqual(format_roundtrip(SEED_NS + 99), "2019-06-19T19:32:16.4161739Z")

    def test_epoch(self):
        self.assertEqual(format_roundtrip(0), "1970-01-01T00:00:00.0000000Z")


class ParseRoundtrip(unittest.TestCase):
    def test_seed_example(self):
        self.assertEqual(parse_roundtrip("2019-06-19T19:32:16.4161739Z"), SEED_NS)

    def test_round_trip_keeps_ticks(self):
        for ns in (0, 100, SEED_NS, 1_718_000_000_123_456_700, 4_102_444_799_999_999_900):
            self.assertEqual(parse_roundtrip(format_roundtrip(ns)), ns)

    def test_newtonsoft_trims_trailing_zeros(self):
        # JsonConvert writes "…:16.41Z" for .4100000 and no fraction for whole seconds.
        whole = SEED_NS - 416_173_900
        self.assertEqual(parse_roundtrip("2019-06-19T19:32:16.41Z"), whole + 410_000_000)
        self.assertEqual(parse_roundtrip("2019-06-19T19:32:16Z"), whole)

    def test_more_digits_than_datetime_supports(self):
        # Python's datetime.fromisoformat stops at 6 digits; we keep the 7th (and up to 9).
        self.assertEqual(parse_roundtrip("2019-06-19T19:32:16.1234567Z") % 10**9, 123_456_700)
        self.assertEqual(parse_roundtrip("2019-06-19T19:32:16.123456789Z") % 10**9, 123_456_789)

    def test_offsets(self):
        self.assertEqual(parse_roundtrip("2019-06-19T19:32:16.4161739+00:00"), SEED_NS)
        self.assertEqual(parse_roundtrip("2019-06-19T21:32:16.4161739+02:00"), SEED_NS)
        self.assertEqual(parse_roundtrip("2019-06-19T14:02:16.4161739-0530"), SEED_NS)
        self.assertEqual(parse_roundtrip("2019-06-19T19:32:16.4161739z"), SEED_NS)

    def test_no_zone_is_utc(self):
        self.assertEqual(parse_roundtrip("2019-06-19T19:32:16.4161739"), SEED_NS)

    def test_agrees_with_datetime_to_the_microsecond(self):
        text = "2023-11-05T01:02:03.9876543Z"
        ref = dt.datetime(2023, 11, 5, 1, 2, 3, 987654, tzinfo=dt.timezone.utc)
        self.assertEqual(parse_roundtrip(text) // 1000, int(ref.timestamp()) * 10**6 + ref.microsecond)

    def test_rejects_garbage(self):
        for bad in ("", "yesterday", "2019-06-19", "2019-06-19 19:32:16Z", "2019-13-01T00:00:00Z",
                    "2019-02-30T00:00:00Z", "2019-06-19T19:32:60Z", "2019-06-19T19:32:16.Z",
                    "2019-06-19T19:32:16.1234567890Z", "2019-06-19T19:32:16+2"):
            with self.assertRaises(ValueError, msg=bad):
                parse_roundtrip(bad)
        with self.assertRaises(ValueError):
            parse_roundtrip(None)


class Stats(unittest.TestCase):
    def test_legs(self):
        legs = legs_ms(1_000_000_000, 1_002_500_000, 1_003_000_000)
        self.assertEqual(legs, {"c2p_ms": 2.5, "p2c_ms": 0.5, "total_ms": 3.0})
        self.assertEqual(ns_to_ms(1_500_000), 1.5)

    def test_percentile_nearest_rank(self):
        xs = list(range(1, 201))  # 1..200
        self.assertEqual(percentile(xs, 50), 100)
        self.assertEqual(percentile(xs, 99), 198)
        self.assertEqual(percentile(xs, 100), 200)
        self.assertEqual(percentile([7.0], 99), 7.0)
        self.assertIsNone(percentile([], 50))

    def test_kind_stats_summary(self):
        s = KindStats()
        empty = s.summary()
        self.assertEqual((empty["count"], empty["min_total_ms"], empty["avg_total_ms"]), (0, None, None))
        s.ok(1.0, 2.0, 3.0)
        s.ok(3.0, 4.0, 7.0)
        s.timeout()
        s.error()
        out = s.summary()
        self.assertEqual(out["count"], 2)
        self.assertEqual((out["timeouts"], out["errors"], out["late"]), (1, 1, 0))
        self.assertEqual((out["min_total_ms"], out["avg_total_ms"], out["max_total_ms"]), (3.0, 5.0, 7.0))
        self.assertEqual(out["avg_c2p_ms"], 2.0)


if __name__ == "__main__":
    unittest.main()
