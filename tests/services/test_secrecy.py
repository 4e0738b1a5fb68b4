"""Passwords inside URLs never reach a message."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from services import run_quietly

import headrace as hr
from headrace.services.secrecy import scrub_text, scrub_url
from headrace.store import StoreLocation


def test_urls_lose_their_password_and_keep_the_rest() -> None:
    assert (
        scrub_url("postgresql://postgres:PASS@db:5432/test")
        == "postgresql://postgres:***@db:5432/test"
    )
    assert scrub_url("redis://:PASS@127.0.0.1:6379/0") == "redis://:***@127.0.0.1:6379/0"
    assert scrub_url("redis://127.0.0.1:6379/0") == "redis://127.0.0.1:6379/0"
    text = 'connection to "postgresql://u:p%40ss@h/db" failed; dsn: host=h password=s3cret user=u'
    assert (
        scrub_text(text)
        == 'connection to "postgresql://u:***@h/db" failed; dsn: host=h password=*** user=u'
    )


def test_a_run_store_that_cannot_be_reached_is_named_without_its_password(tmp_path: Path) -> None:
    url = "postgresql://postgres:TOPSECRET@127.0.0.1:1/test"
    with pytest.raises(ConnectionError) as failed:
        StoreLocation(tmp_path / "r", url).open()
    assert "TOPSECRET" not in str(failed.value) and "postgres:***@127.0.0.1:1" in str(failed.value)
    assert "TOPSECRET" not in str(StoreLocation(tmp_path / "r", url))


def test_the_redis_cache_warning_hides_the_password(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    cache = hr.Cache(["redis://:TOPSECRET@127.0.0.1:1/0"], version="1")

    @hr.step(cache=cache)
    def same(x: int) -> int:
        return x

    with caplog.at_level(logging.WARNING, logger="headrace.cache"):
        assert run_quietly(same, range(3)).outputs is not None
    shown = " ".join(r.getMessage() for r in caplog.records)
    assert "is not answering" in shown
    assert "TOPSECRET" not in shown and "redis://:***@127.0.0.1:1/0" in shown
