"""Retry policy: exponential backoff with jitter, capped."""

from __future__ import annotations

import random

from application.retry import Backoff, RetryPolicy


def test_delays_grow_exponentially_within_jitter_bounds_and_are_capped() -> None:
    policy = RetryPolicy(max_attempts=10, base_delay=1.0, max_delay=5.0)
    rng = random.Random(7)

    for attempt, bound in [(1, 1.0), (2, 2.0), (3, 4.0), (4, 5.0), (9, 5.0)]:
        delays = [policy.delay(attempt, rng) for _ in range(50)]
        assert all(bound / 2 <= d <= bound for d in delays)
        assert len(set(delays)) > 1


def test_attempts_run_out_at_the_maximum() -> None:
    policy = RetryPolicy(max_attempts=3)

    assert not policy.exhausted(2)
    assert policy.exhausted(3)


def test_backoff_doubles_while_failures_follow_and_starts_over_after_a_long_run() -> None:
    backoff = Backoff(first=1.0, longest=8.0)

    pauses = [backoff.after_failure(ran_for=0.1) for _ in range(5)]
    after_a_long_run = backoff.after_failure(ran_for=9.0)

    assert pauses == [1.0, 2.0, 4.0, 8.0, 8.0]
    assert after_a_long_run == 1.0
    assert backoff.streak == 1
