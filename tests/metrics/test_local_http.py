"""The live page and the metrics port answer only for this machine (no DNS rebinding),
and hold one thread however many connections are open."""

from __future__ import annotations

import asyncio
import http.client
import socket
import threading
from pathlib import Path

import pytest

import headrace as hr
from headrace.metrics.exporter import MetricsExporter
from headrace.metrics.local_http import host_allowed
from headrace.report.live import LivePage
from headrace.store import StoreLocation


def _get(port: int, host_header: str, path: str = "/") -> int:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        connection.putrequest("GET", path, skip_host=True)
        connection.putheader("Host", host_header)
        connection.endheaders()
        return connection.getresponse().status
    finally:
        connection.close()


@pytest.mark.parametrize(
    ("header", "allowed"),
    [
        ("127.0.0.1:8000", True),
        ("localhost:8000", True),
        ("LOCALHOST.", True),
        ("[::1]:8000", True),
        ("10.1.2.3", True),  # an address: a rebinding attack needs a name
        ("attacker.example:8000", False),
        ("localhost.attacker.example", False),
        ("127.0.0.1.nip.io", False),
        ("", False),
    ],
)
def test_which_host_headers_are_answered(header: str, allowed: bool) -> None:
    assert host_allowed(header, "127.0.0.1") is allowed


def test_a_name_the_server_listens_on_is_answered() -> None:
    assert host_allowed("box.lan:8000", "box.lan")
    assert not host_allowed("box.lan:8000", "0.0.0.0")


def test_the_live_page_refuses_a_rebound_name(tmp_path: Path) -> None:
    hr.run(lambda n: n, range(5), run_dir=tmp_path / "r", sink=hr.write_jsonl(tmp_path / "o.jsonl"))
    with LivePage(StoreLocation(tmp_path / "r")) as live:
        assert _get(live.port, f"127.0.0.1:{live.port}") == 200
        assert _get(live.port, f"localhost:{live.port}", "/body") == 200
        assert _get(live.port, f"rebind.attacker.example:{live.port}") == 403
        assert _get(live.port, "rebind.attacker.example", "/body") == 403


def _threads() -> int:
    return threading.active_count()


def test_the_metrics_port_refuses_a_rebound_name_and_holds_one_thread() -> None:
    async def main() -> None:
        exporter = MetricsExporter(lambda: {"steps": {}}, port=0)
        exporter.start()
        try:
            port = exporter.port
            ok = await asyncio.to_thread(_get, port, f"127.0.0.1:{port}", "/metrics")
            assert ok == 200
            assert await asyncio.to_thread(_get, port, "evil.example", "/metrics") == 403
            before = _threads()
            idle = []
            for _ in range(300):  # half-open: connected, never a request
                sock = socket.create_connection(("127.0.0.1", port))
                idle.append(sock)
            ok = await asyncio.to_thread(_get, port, f"localhost:{port}", "/metrics")
            assert ok == 200  # still answering
            assert _threads() <= before + 8  # not a thread per connection
            for sock in idle:
                sock.close()
        finally:
            exporter.stop()

    asyncio.run(main())
