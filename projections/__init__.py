"""Read models materialized from the event log with tracking (the registry issue)."""
