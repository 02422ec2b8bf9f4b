"""Load from a separate, cheap process: ``wrk`` PUTting commands with unique ids."""

from __future__ import annotations

import re
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

# Each wrk thread numbers its own requests; ids are <prefix>-<thread>-<n>.
SCRIPT = """
local threads = {}
function setup(thread)
  table.insert(threads, thread)
  thread:set("id", #threads)
end
function init(args)
  prefix = args[1] .. "-" .. id .. "-"
  counter = 0
  body = args[2]
  headers = {}
  headers["Content-Type"] = "application/json"
  if args[3] ~= nil and args[3] ~= "" then headers["Authorization"] = "Bearer " .. args[3] end
end
function request()
  counter = counter + 1
  local key = prefix .. counter
  headers["Idempotency-Key"] = key
  return wrk.format("PUT", "/shows/" .. key, headers, body)
end
"""


@dataclass(frozen=True)
class WrkResult:
    """What wrk measured."""

    requests: int
    seconds: float
    non_2xx: int
    socket_errors: int
    latency_ms: dict[str, float]

    @property
    def accepted_per_s(self) -> float:
        """2xx answers per second."""
        return (self.requests - self.non_2xx) / self.seconds

    @property
    def accepted(self) -> int:
        """2xx answers."""
        return self.requests - self.non_2xx


def run_wrk(
    base: str,
    prefix: str,
    body: str,
    seconds: int,
    connections: int = 32,
    threads: int = 2,
    token: str = "",
) -> WrkResult:
    """PUT ``/shows/<unique id>`` with ``body`` for ``seconds`` over ``connections``."""
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
        script.write(SCRIPT)
    command = [
        "wrk",
        f"-t{threads}",
        f"-c{connections}",
        f"-d{seconds}s",
        "--latency",
        "--timeout",
        "30s",
        "-s",
        script.name,
        base,
        "--",
        prefix,
        body,
        token,
    ]
    output = subprocess.run(
        command, capture_output=True, text=True, check=True, timeout=seconds + 60
    ).stdout
    Path(script.name).unlink()
    return parse(output)


def _ms(value: str, unit: str) -> float:
    return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0}[unit]


def parse(output: str) -> WrkResult:
    """Read wrk's report."""
    done = re.search(r"(\d+) requests in ([\d.]+)(ms|s|m)", output)
    if done is None:
        raise ValueError(f"not a wrk report: {output[-500:]}")
    seconds = _ms(done[2], done[3]) / 1000
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    errors = re.search(
        r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output
    )
    latency = {
        f"p{p}": _ms(value, unit)
        for p, value, unit in re.findall(r"^\s+(50|75|90|99)%\s+([\d.]+)(us|ms|s|m)", output, re.M)
    }
    return WrkResult(
        requests=int(done[1]),
        seconds=seconds,
        non_2xx=int(non_2xx[1]) if non_2xx else 0,
        socket_errors=sum(int(n) for n in errors.groups()) if errors else 0,
        latency_ms=latency,
    )
