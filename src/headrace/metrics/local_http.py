"""A small HTTP server for what a run shows while it runs (the live page, Prometheus).

It serves an aiohttp application from one thread with its own event loop, so a
thousand idle or half-open connections cost sockets, not threads, and it
answers only requests whose ``Host`` header names this machine or the address
it listens on: a web page elsewhere that points a name of its own at
127.0.0.1 (DNS rebinding) gets 403 and never reads the run's data, as Jupyter
does. An IP address in ``Host`` is always accepted (a rebinding attack needs a
name); a name other than ``localhost`` only when the server listens on it.
"""

from __future__ import annotations

import asyncio
import ipaddress
import threading
from collections.abc import Awaitable, Callable, Mapping

from aiohttp import web

__all__ = ["LocalSite", "host_allowed"]

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def host_allowed(header: str | None, listening_on: str) -> bool:
    """Whether a request's ``Host`` header may be answered by a server on ``listening_on``."""
    if not header:
        return False
    name = header.strip().lower()
    if name.startswith("["):  # [::1]:8080
        name = name[1 : name.find("]")] if "]" in name else name
    elif name.count(":") == 1:
        name = name.rsplit(":", 1)[0]
    name = name.rstrip(".")
    if name in ("localhost", listening_on.lower()):
        return True
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


class LocalSite:
    """Serves the routes ``routes`` (path to handler, ``GET`` only) on ``host:port``.

    Args:
        routes: path to an aiohttp handler.
        host: the address to listen on.
        port: the port; 0 picks a free one (see :attr:`port` once started).
        name: the serving thread's name.
    """

    def __init__(self, routes: Mapping[str, Handler], host: str, port: int, name: str) -> None:
        self.routes = routes
        self.host = host
        self.port = port
        self.name = name
        self._loop: asyncio.AbstractEventLoop | None = None
        self._runner: web.AppRunner | None = None
        self._thread: threading.Thread | None = None

    async def _start(self) -> None:
        app = web.Application(middlewares=[self._check_host])
        for path, handler in self.routes.items():
            app.router.add_get(path, handler)
        runner = self._runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, self.host, self.port)
        await site.start()
        self.port = runner.addresses[0][1]

    @web.middleware
    async def _check_host(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        if not host_allowed(request.headers.get("Host"), self.host):
            return web.Response(status=403, text="this server answers only for this machine\n")
        return await handler(request)

    def start(self) -> int:
        """Start serving in a background thread; return the port.

        Raises:
            OSError: the port cannot be listened on.
        """
        loop = self._loop = asyncio.new_event_loop()
        ready = threading.Event()
        failed: list[BaseException] = []

        def serve() -> None:
            asyncio.set_event_loop(loop)
            try:
                loop.run_until_complete(self._start())
            except BaseException as exc:
                failed.append(exc)
                ready.set()
                return
            ready.set()
            loop.run_forever()

        self._thread = threading.Thread(target=serve, name=self.name, daemon=True)
        self._thread.start()
        ready.wait()
        if failed:
            loop.close()
            self._loop = None
            raise failed[0]
        return self.port

    def stop(self) -> None:
        """Stop serving and wait for the thread to end."""
        loop, runner = self._loop, self._runner
        if loop is None or self._thread is None:
            return
        if runner is not None:
            asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result(timeout=10)
        loop.call_soon_threadsafe(loop.stop)
        self._thread.join(timeout=10)
        loop.close()
        self._loop = None
