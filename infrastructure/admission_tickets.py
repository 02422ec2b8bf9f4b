"""The times admission control gave shed commands to come back, shared by the web
processes (a retry may reach another process than the one that shed it)."""

from __future__ import annotations

from eventsourcing.postgres import PostgresDatastore

from application.admission import Ticket

# A ticket is kept this long after its time (a client that came back late still had
# room kept for it).
LATE_SECONDS = 30.0
# A ticket holds room against new commands until this long after its time.
OVERDUE_SECONDS = 1.0


class PostgresTickets:
    """As :class:`~application.admission.Tickets`, in an unlogged table: a ticket lost
    in a crash only means that its retry is judged afresh, like a new command."""

    CREATE = (
        "CREATE UNLOGGED TABLE IF NOT EXISTS admission_tickets (client text NOT NULL, "
        "idempotency_key text NOT NULL, due_at timestamptz NOT NULL, "
        "PRIMARY KEY (client, idempotency_key))"
    )
    # The last ticket's time, in one row that every issue updates: concurrent issues
    # wait on its lock, so that no two tickets get the same time.
    SCHEDULE = (
        "CREATE UNLOGGED TABLE IF NOT EXISTS admission_schedule "
        "(id int PRIMARY KEY CHECK (id = 1), last_due timestamptz NOT NULL)"
    )

    def __init__(self, datastore: PostgresDatastore) -> None:
        self.datastore = datastore

    def create_table(self) -> None:
        """Create the table (``boxoffice migrate``)."""
        with self.datastore.transaction(commit=True) as curs:
            curs.execute(self.CREATE)
            curs.execute(self.SCHEDULE)

    def issue(self, client: str, key: str, due_in: float, spacing: float) -> float:
        """Keep room for ``client``'s command ``key`` in ``due_in`` seconds, or
        ``spacing`` seconds after the last ticket issued if that is later, whichever web
        process issued it (one at a time: see :attr:`SCHEDULE`); returns the seconds
        until it is due."""
        with self.datastore.transaction(commit=True) as curs:
            curs.execute(
                "WITH slot AS (INSERT INTO admission_schedule VALUES "
                "(1, clock_timestamp() + make_interval(secs => %(due_in)s)) "
                "ON CONFLICT (id) DO UPDATE SET last_due = greatest(EXCLUDED.last_due, "
                "admission_schedule.last_due + make_interval(secs => %(spacing)s)) "
                "RETURNING last_due) "
                "INSERT INTO admission_tickets SELECT %(client)s, %(key)s, last_due FROM slot "
                "ON CONFLICT (client, idempotency_key) DO UPDATE SET due_at = EXCLUDED.due_at "
                "RETURNING extract(epoch FROM due_at - clock_timestamp()) AS wait",
                {"client": client, "key": key, "due_in": due_in, "spacing": spacing},
            )
            row = curs.fetchone()
        return max(float(row["wait"]), 0.0) if row is not None else due_in

    def redeem(self, client: str, key: str, room: bool) -> Ticket | None:
        """As :meth:`~application.admission.Tickets.redeem`: a ticket is in date up to
        :data:`LATE_SECONDS` after its time."""
        with self.datastore.transaction(commit=True) as curs:
            curs.execute(
                "WITH ticket AS (SELECT extract(epoch FROM due_at - clock_timestamp()) AS wait "
                "FROM admission_tickets WHERE client = %(client)s "
                "AND idempotency_key = %(key)s "
                "AND due_at > clock_timestamp() - make_interval(secs => %(late)s)), "
                "used AS (DELETE FROM admission_tickets WHERE client = %(client)s "
                "AND idempotency_key = %(key)s AND %(room)s "
                "AND EXISTS (SELECT FROM ticket) RETURNING 1) "
                "SELECT wait, EXISTS (SELECT FROM used) AS used FROM ticket",
                {
                    "client": client,
                    "key": key,
                    "late": LATE_SECONDS,
                    "room": room,
                },
            )
            row = curs.fetchone()
        if row is None:
            return None
        return Ticket(due_in=float(row["wait"]), used=bool(row["used"]))

    def outstanding(self, within: float) -> int:
        """The tickets not used yet that are due within ``within`` seconds, or were due
        at most :data:`OVERDUE_SECONDS` ago: a holder later than that still has its
        ticket, but no longer holds room against new commands (those out of date are
        dropped)."""
        with self.datastore.transaction(commit=True) as curs:
            curs.execute(
                "WITH gone AS (DELETE FROM admission_tickets "
                "WHERE due_at <= clock_timestamp() - make_interval(secs => %(late)s)) "
                "SELECT count(*) AS n FROM admission_tickets "
                "WHERE due_at > clock_timestamp() - make_interval(secs => %(overdue)s) "
                "AND due_at <= clock_timestamp() + make_interval(secs => %(within)s)",
                {"late": LATE_SECONDS, "overdue": OVERDUE_SECONDS, "within": within},
            )
            row = curs.fetchone()
        return int(row["n"]) if row is not None else 0
