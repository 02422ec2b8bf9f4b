"""Runs the real ``boxoffice`` sub-commands as child processes for tests."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def last_line_of(script: str, **env: str) -> str:
    """The last line Python ``script`` prints, run in a process of its own (with this
    repository importable and ``env``): for what is set once per process, such as
    tracing or a frozen heap."""
    ran = subprocess.run(
        [sys.executable, "-c", script],
        env={**os.environ, "PYTHONPATH": str(ROOT), **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return ran.stdout.strip().splitlines()[-1]


def wait_until(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    """Poll ``predicate`` until it holds; fail the test with ``what`` after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.05)


class ServiceProcess:
    """One ``boxoffice PART`` process (or ``argv``) with its output in a log file."""

    def __init__(
        self,
        part: str,
        env: dict[str, str],
        log_dir: Path,
        name: str = "",
        argv: list[str] | None = None,
    ) -> None:
        self.part = part
        self.env = env
        self.log = log_dir / f"{name or part}.log"
        self.argv = argv or [sys.executable, "-m", "interfaces.cli.main", part]
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> ServiceProcess:
        """Start the process (again, after a stop or kill)."""
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                self.argv,
                env=self.env,
                cwd=ROOT,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        return self

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def output(self) -> str:
        """Everything the process logged so far."""
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def wait_for_output(self, text: str, timeout: float = 30) -> None:
        """Wait until ``text`` appears in the log; fail with the log if the process dies."""

        def seen() -> bool:
            if self.process is not None and self.process.poll() is not None:
                raise AssertionError(f"{self.part} exited:\n{self.output()[-3000:]}")
            return text in self.output()

        wait_until(seen, timeout, f"{text!r} in the {self.part} log")

    def kill(self) -> None:
        """SIGKILL the whole process group: no clean-up of any kind."""
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()

    def stop(self, timeout: float = 20) -> None:
        """SIGTERM, then SIGKILL if it does not exit in time."""
        if self.process is None or self.process.poll() is not None:
            return
        os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()


def service_env(database_url: str, broker_url: str, queue: str, **extra: str) -> dict[str, str]:
    """The environment for ``boxoffice`` processes in tests."""
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("DATABASE_", "BROKER_", "COMMAND_", "WEB_", "WORKER_"))
    }
    env.update(
        DATABASE_URL=database_url,
        BROKER_URL=broker_url,
        COMMAND_QUEUE=queue,
        COMMAND_MODULES="tests.support.commands",
        COMMAND_RETRY_BASE_DELAY="0.05",
        COMMAND_RETRY_MAX_DELAY="0.5",
        WORKER_CONCURRENCY="2",
        LOG_LEVEL="INFO",
        PYTHONPATH=str(ROOT),
        PYTHONUNBUFFERED="1",
    )
    env.update(extra)
    return env


@contextmanager
def running(*processes: ServiceProcess) -> Iterator[None]:
    """Start the processes, and stop them at the end whatever happens."""
    try:
        for process in processes:
            process.start()
        yield
    finally:
        for process in reversed(processes):
            process.stop()


def http_ready(url: str) -> Callable[[], bool]:
    """A predicate: ``url`` answers at all (any status)."""

    def ready() -> bool:
        try:
            with urllib.request.urlopen(url, timeout=5):  # noqa: S310 - loopback test URL
                return True
        except urllib.error.HTTPError:
            return True
        except OSError:
            return False

    return ready
