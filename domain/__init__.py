"""The seat-reservation domain: aggregates, their events and the rules they guard.

Pure Python on ``eventsourcing.domain``: no I/O, no framework, no SQL.
"""
