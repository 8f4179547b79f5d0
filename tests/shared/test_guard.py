"""The cheap checks' bookkeeping: the token bucket per client address, and the summary of calls
refused before their caller was known, one audit row per address per minute."""

from __future__ import annotations

from shared.errors import InvalidRequest, InviteRefused, RateLimited
from shared.guard import RefusalSummary, TokenBucket


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def test_a_bucket_allows_its_burst_then_its_rate_per_address() -> None:
    clock = Clock(100.0)
    bucket = TokenBucket(rate=10.0, burst=30, clock=clock)
    assert [bucket.allow("192.0.2.7") for _ in range(31)].count(True) == 30
    assert bucket.allow("198.51.100.1")  # another address has a bucket of its own
    clock.now += 0.5  # half a second: five more
    assert [bucket.allow("192.0.2.7") for _ in range(10)].count(True) == 5
    clock.now += 3600  # an hour: full again, never more than the burst
    assert [bucket.allow("192.0.2.7") for _ in range(40)].count(True) == 30


def test_refusals_are_written_as_one_row_per_address_per_minute() -> None:
    rows: list[tuple[str, dict[str, object], str]] = []
    clock = Clock(1_796_000_000.0 - 1_796_000_000.0 % 60 + 5)  # 5 s into a minute
    summary = RefusalSummary(lambda a, p, d: rows.append((a, p, d)), clock=clock)
    for _ in range(500):
        summary.note("192.0.2.7", "/cagnet.v1.Onboarding/PublicFiles", InviteRefused("unknown invite"))
    summary.note("192.0.2.7", "/cagnet.v1.Onboarding/FileJoin", RateLimited())
    summary.note("198.51.100.1", "/cagnet.v1.Onboarding/PublicFiles", InvalidRequest("malformed request"))
    assert rows == []  # the minute is not over
    clock.now += 60  # the next minute: the first call in it writes the last one's rows
    summary.note("192.0.2.7", "/cagnet.v1.Onboarding/PublicFiles", RateLimited())
    assert [(a, p["calls"], p["rules"], p["methods"]) for a, p, _ in rows] == [
        ("192.0.2.7", 501, {"invite-refused": 500, "rate-limited": 1}, {"FileJoin": 1, "PublicFiles": 500}),
        ("198.51.100.1", 1, {"invalid-request": 1}, {"PublicFiles": 1}),
    ]
    assert rows[0][2] == "rejected: 501 unauthenticated call(s) in one minute"
    assert rows[0][1]["minute"] == "2026-11-30T00:53Z"
    # Stopping the server writes what is left.
    assert summary.flush(everything=True) == 1 and rows[-1][1]["calls"] == 1
