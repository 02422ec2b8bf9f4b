"""The overload workload's figures: first retries counted as a whole, and over those
the client sent when told (a client that honours Retry-After)."""

from __future__ import annotations

from benchmarks.overload import Job, Observed, _figures


def test_first_retries_sent_late_by_the_client_are_told_apart() -> None:
    observed = Observed(latencies_ms=[10.0] * 8)
    jobs = [
        Job("on-time-taken", statuses=[503, 202], lateness=[0.0, 0.2]),
        Job("on-time-taken-too", statuses=[503, 202], lateness=[0.0, 0.9]),
        Job("on-time-shed", statuses=[503, 503, 202], lateness=[0.0, 0.1, 0.0]),
        Job("late-shed", statuses=[503, 503, 202], lateness=[0.0, 4.0, 0.0]),
        Job("never-shed", statuses=[202], lateness=[0.0]),
    ]

    figures = _figures(observed, jobs, 0.0, 60.0, 60, 10.0, 10.0)

    assert figures["shed_then_retried"] == 4
    assert figures["accepted_on_first_retry"] == 0.5
    assert figures["first_retries_late"] == 0.25
    assert figures["accepted_on_first_retry_on_time"] == round(2 / 3, 3)
    assert figures["first_retry_lateness_s"] == {"p50": 0.9, "p99": 4.0}
