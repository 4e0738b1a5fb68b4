"""``headrace sim``: a simulated OpenAI-compatible provider for dry runs, tests and benchmarks.

From the command line::

    headrace sim --rpm 6000 --burst 100 --latency-ms 100 --fault 503=0.05

From Python or pytest, on a free port, for the length of a ``with`` block::

    from headrace.sim import serve

    with serve(rpm=6000, latency_ms=100) as sim:
        client = openai.OpenAI(base_url=sim.url, api_key="sim")
        ...
        print(sim.stats()["throttled"])

``serve(..., process=True)`` runs the server in a child process instead of a
thread, so that it does not share the caller's GIL (what benchmarks want).
It listens on the loopback interface only.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import subprocess
import sys
import threading
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from typing import Any

from .config import FAULTS, SimConfig, parse_faults

__all__ = ["FAULTS", "SimConfig", "SimServer", "parse_faults", "run_forever", "serve"]


def _check_loopback(host: str) -> None:
    try:
        loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if not loopback:
        raise ValueError(f"headrace sim listens on the loopback interface only, not {host!r}")


async def _start(config: SimConfig, host: str, port: int) -> tuple[Any, int]:
    from aiohttp import web

    from .server import build_app

    runner = web.AppRunner(build_app(config), handle_signals=False, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    server = getattr(site, "_server", None)
    sockets = getattr(server, "sockets", None) or []
    bound = sockets[0].getsockname()[1] if sockets else port
    return runner, int(bound)


def run_forever(config: SimConfig, host: str = "127.0.0.1", port: int = 8000) -> None:
    """Serve until interrupted, printing ``headrace sim listening on URL`` once bound."""
    _check_loopback(host)

    async def main() -> None:
        runner, bound = await _start(config, host, port)
        print(f"headrace sim listening on http://{host}:{bound}/v1", flush=True)
        try:
            await asyncio.Event().wait()
        finally:
            await runner.cleanup()

    with suppress(KeyboardInterrupt):
        asyncio.run(main())


class SimServer:
    """A running simulator: its base ``url`` (ending in ``/v1``), ``stats()`` and ``reset()``."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.root = url.removesuffix("/v1")

    def stats(self) -> dict[str, Any]:
        """The server's counters (see ``GET /stats``)."""
        with urllib.request.urlopen(f"{self.root}/stats", timeout=10) as answer:
            stats: dict[str, Any] = json.loads(answer.read())
        return stats

    def reset(self) -> None:
        """Refill the buckets and zero the counters (``POST /reset``)."""
        request = urllib.request.Request(f"{self.root}/reset", data=b"", method="POST")
        with urllib.request.urlopen(request, timeout=10) as answer:
            if not json.loads(answer.read()).get("reset"):
                raise RuntimeError(f"headrace sim at {self.url} did not reset")


@contextmanager
def serve(
    config: SimConfig | None = None,
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    process: bool = False,
    **options: Any,
) -> Iterator[SimServer]:
    """Run a simulator for the length of a ``with`` block (see the module's notes).

    Args:
        config: the simulator's settings; or give them as keyword ``options``.
        host: a loopback address.
        port: 0 for a free port.
        process: serve from a child process rather than a thread.
    """
    _check_loopback(host)
    if config is None:
        config = SimConfig(**options)
    elif options:
        raise TypeError("give serve() either a SimConfig or keyword options, not both")
    if process:
        with _in_process(config, host, port) as url:
            yield SimServer(url)
    else:
        with _in_thread(config, host, port) as url:
            yield SimServer(url)


@contextmanager
def _in_thread(config: SimConfig, host: str, port: int) -> Iterator[str]:
    loop = asyncio.new_event_loop()
    ready = threading.Event()
    bound: list[Any] = []

    def main() -> None:
        asyncio.set_event_loop(loop)
        try:
            bound.append(loop.run_until_complete(_start(config, host, port)))
        except BaseException as exc:
            bound.append(exc)
            ready.set()
            return
        ready.set()
        loop.run_forever()
        loop.run_until_complete(bound[0][0].cleanup())
        loop.close()

    thread = threading.Thread(target=main, name="headrace-sim", daemon=True)
    thread.start()
    ready.wait()
    if isinstance(bound[0], BaseException):
        raise bound[0]
    try:
        yield f"http://{host}:{bound[0][1]}/v1"
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=30)


@contextmanager
def _in_process(config: SimConfig, host: str, port: int) -> Iterator[str]:
    code = (
        "import json, sys; from headrace.sim import SimConfig, run_forever; "
        "run_forever(SimConfig(**json.loads(sys.argv[1])), sys.argv[2], int(sys.argv[3]))"
    )
    fields = {name: getattr(config, name) for name in SimConfig.__dataclass_fields__}
    fields["faults"] = dict(config.faults)
    child = subprocess.Popen(
        [sys.executable, "-c", code, json.dumps(fields), host, str(port)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout is not None
        line = child.stdout.readline()
        if not line.startswith("headrace sim listening on "):
            raise RuntimeError(f"headrace sim did not start (exit {child.wait()})")
        yield line.removeprefix("headrace sim listening on ").strip()
    finally:
        child.terminate()
        child.wait(timeout=30)
