"""The live page of a run: its report, served over HTTP and refreshed every 1.5 s.

Each request reads the run's store again (the run writes its metrics there every
second, see :mod:`headrace.metrics.timeline`), so the page works for a run in this
process (``headrace run --ui``), in another process or on another machine
(``headrace ui RUN_DIR``, with ``--run-store`` for PostgreSQL), and goes on
across a kill and a resume. The server answers ``GET`` only, reads and never
writes, listens on 127.0.0.1 unless told otherwise, answers only requests that
name this machine (see :mod:`headrace.metrics.local_http`), and shows what the
report shows (no secrets: credentials in URLs are scrubbed).
"""

from __future__ import annotations

import asyncio
from html import escape

from aiohttp import web

from ..errors import HeadraceError
from ..metrics.local_http import LocalSite
from ..store import StoreLocation
from .page import RunRecord, document, render_body, render_page

__all__ = ["LivePage"]

_WAITING = '<p class="where">Waiting for the run in {} to start…</p>'


class LivePage:
    """Serves the live page of the run at ``location`` from a thread of its own.

    Args:
        location: where the run's store is.
        host: the address to listen on (127.0.0.1: this machine only).
        port: the port; 0 picks a free one (see :attr:`url`).
    """

    def __init__(self, location: StoreLocation, *, host: str = "127.0.0.1", port: int = 0) -> None:
        self.location = location
        self.host = host
        self.port = port
        self.url = ""
        self._site: LocalSite | None = None

    def _record(self) -> RunRecord | str:
        """The run now, or what to say instead (none yet, or its store cannot be read)."""
        try:
            if not self.location.exists():
                return _WAITING.format(escape(str(self.location)))
            return RunRecord.load(self.location)
        except HeadraceError as exc:  # a damaged store: say so, and try again next time
            return f'<p class="error">{escape(str(exc))}</p>'

    async def _page(self, request: web.Request) -> web.Response:
        record = await asyncio.to_thread(self._record)
        if isinstance(record, str):
            html = document("headrace", record, live=True)
        else:
            html = render_page(record, live=True)
        return web.Response(text=html, content_type="text/html", headers=_NO_CACHE)

    async def _body(self, request: web.Request) -> web.Response:
        record = await asyncio.to_thread(self._record)
        body = record if isinstance(record, str) else render_body(record)
        return web.Response(text=body, content_type="text/html", headers=_NO_CACHE)

    def start(self) -> str:
        """Start serving in a background thread; return the page's URL.

        Raises:
            OSError: the port cannot be listened on.
        """
        routes = {"/": self._page, "/body": self._body, "/favicon.ico": _no_icon}
        site = LocalSite(routes, self.host, self.port, "headrace-live-page")
        self.port = site.start()
        self._site = site
        self.url = f"http://{self.host}:{self.port}/"
        return self.url

    def stop(self) -> None:
        """Stop serving and wait for the thread to end."""
        site, self._site = self._site, None
        if site is not None:
            site.stop()

    def __enter__(self) -> LivePage:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


async def _no_icon(request: web.Request) -> web.Response:
    return web.Response(status=204)


_NO_CACHE = {"Cache-Control": "no-store"}
