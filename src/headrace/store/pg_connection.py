"""The PostgreSQL run store's plumbing: its tables, its connection pool, and how it
waits out an outage of the database."""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from typing import Any, TypeVar

from ..errors import StoreUnavailable
from ..services.secrecy import scrub_text, scrub_url

__all__ = ["SCHEMA", "open_pool", "outage_bound_s", "outlasting"]

T = TypeVar("T")
_log = logging.getLogger("headrace.run")


def outage_bound_s() -> float:
    """How long a run waits for its PostgreSQL store to answer again before it stops
    (``$HEADRACE_STORE_OUTAGE_S``, default 60)."""
    return float(os.environ.get("HEADRACE_STORE_OUTAGE_S", "60"))


SCHEMA = """
CREATE TABLE IF NOT EXISTS headrace_runs (
    run TEXT PRIMARY KEY,
    definition TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    watermark BIGINT NOT NULL DEFAULT 0,
    key_digest TEXT NOT NULL DEFAULT '',
    sink_state TEXT NOT NULL DEFAULT '{}',
    total BIGINT,
    created DOUBLE PRECISION NOT NULL,
    updated DOUBLE PRECISION NOT NULL
);
-- a database that an earlier headrace set up gains the columns added since
ALTER TABLE headrace_runs ADD COLUMN IF NOT EXISTS key_digest TEXT NOT NULL DEFAULT '';
ALTER TABLE headrace_runs ADD COLUMN IF NOT EXISTS total BIGINT;
CREATE TABLE IF NOT EXISTS headrace_items (
    run TEXT NOT NULL,
    idx BIGINT NOT NULL,
    key TEXT NOT NULL,
    status TEXT NOT NULL,
    session INTEGER NOT NULL,
    PRIMARY KEY (run, idx)
);
ALTER TABLE headrace_items ADD COLUMN IF NOT EXISTS ord BIGINT;
CREATE TABLE IF NOT EXISTS headrace_dead (
    run TEXT NOT NULL,
    idx BIGINT NOT NULL,
    step TEXT NOT NULL,
    error_type TEXT NOT NULL,
    message TEXT NOT NULL,
    attempts INTEGER NOT NULL,
    item TEXT,
    finished DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (run, idx)
);
CREATE TABLE IF NOT EXISTS headrace_leases (
    run TEXT PRIMARY KEY,
    holder TEXT NOT NULL,
    session INTEGER NOT NULL,
    host TEXT NOT NULL,
    pid INTEGER NOT NULL,
    acquired DOUBLE PRECISION NOT NULL,
    heartbeat DOUBLE PRECISION NOT NULL
);
-- which pids the holder could see (boot id and pid namespace), added after the table.
-- Altered only when missing: ALTER TABLE takes an exclusive lock even with IF NOT
-- EXISTS, and a session opening its pool while another commits (the lease row locked,
-- then items written) would deadlock with it
DO $$ BEGIN
  IF NOT EXISTS (
    SELECT 1 FROM information_schema.columns WHERE table_schema = current_schema()
      AND table_name = 'headrace_leases' AND column_name = 'machine'
  ) THEN
    ALTER TABLE headrace_leases ADD COLUMN machine TEXT NOT NULL DEFAULT '';
  END IF;
END $$;
CREATE TABLE IF NOT EXISTS headrace_sessions (
    run TEXT NOT NULL,
    n INTEGER NOT NULL,
    started DOUBLE PRECISION NOT NULL,
    forced BOOLEAN NOT NULL DEFAULT false,
    note TEXT,
    PRIMARY KEY (run, n)
);
CREATE TABLE IF NOT EXISTS headrace_samples (
    run TEXT NOT NULL,
    session INTEGER NOT NULL,
    seq INTEGER NOT NULL,
    t DOUBLE PRECISION NOT NULL,
    data TEXT NOT NULL,
    PRIMARY KEY (run, session, seq)
);
"""


def _pool_class() -> Any:
    try:
        from psycopg_pool import ConnectionPool
    except ImportError as exc:  # pragma: no cover - installed with the extra
        raise ImportError(
            "a PostgreSQL run store needs psycopg 3 and psycopg-pool: "
            "pip install 'headrace[postgres]'"
        ) from exc
    return ConnectionPool


def open_pool(url: str) -> Any:
    """A connection pool to the database at ``url``, its tables created if needed.

    Raises:
        ConnectionError: the database cannot be reached.
    """
    pool_class = _pool_class()
    pool = pool_class(
        "postgresql://" + url.split("://", 1)[1],
        min_size=1,
        max_size=4,
        kwargs={"connect_timeout": 10},
        timeout=2.0,  # waiting for a connection: an outage shows after 2 s, then is waited out
        open=False,
        check=pool_class.check_connection,  # a connection that died with the server is replaced
    )
    try:
        pool.open(wait=True, timeout=15)
    except Exception as exc:  # psycopg_pool.PoolTimeout, OperationalError
        pool.close()
        raise ConnectionError(
            f"cannot connect to the run store at {scrub_url(url)}: {scrub_text(str(exc))}"
        ) from None
    with pool.connection() as connection:
        if connection.execute(_SCHEMA_IS_CURRENT).fetchone()[0]:
            return pool  # no lock taken: a session frozen while opening blocks no other
        # a transaction-scoped advisory lock: two first runs must not race on CREATE
        connection.execute("SELECT pg_advisory_xact_lock(7391)")
        connection.execute(SCHEMA)
    return pool


# every table of SCHEMA, and the columns added to them since they were first made
_SCHEMA_IS_CURRENT = """
SELECT (SELECT count(*) FROM information_schema.columns
        WHERE table_schema = current_schema() AND (table_name, column_name) IN (
          ('headrace_runs', 'key_digest'), ('headrace_runs', 'total'),
          ('headrace_leases', 'machine'), ('headrace_items', 'ord'))) = 4
   AND to_regclass('headrace_items') IS NOT NULL
   AND to_regclass('headrace_dead') IS NOT NULL
   AND to_regclass('headrace_sessions') IS NOT NULL
   AND to_regclass('headrace_samples') IS NOT NULL
"""


def outlasting(url: str, what: str, once: Callable[[bool], T], *, role: str = "the run store") -> T:
    """``once(retried)``, again while the database does not answer, for up to
    :func:`outage_bound_s`; one warning when the outage starts, one when it ends.
    ``role`` names the database in those lines (the run store, or a sink's).

    Raises:
        StoreUnavailable: the outage lasted longer than that.
    """
    import psycopg
    from psycopg_pool import PoolTimeout

    started = time.monotonic()
    pause = 0.25
    failed: Exception | None = None
    while True:
        try:
            result = once(failed is not None)
        except (psycopg.OperationalError, PoolTimeout) as exc:
            if failed is None:
                _log.warning(
                    "headrace: %s at %s is not answering (%s); waiting up to %.0f s for it",
                    role,
                    scrub_url(url),
                    scrub_text(str(exc)).strip().splitlines()[0][:200] if str(exc) else "",
                    outage_bound_s(),
                )
            failed = exc
            if time.monotonic() - started > outage_bound_s():
                raise StoreUnavailable(
                    f"{role} at {scrub_url(url)} did not answer for "
                    f"{outage_bound_s():.0f} s (during a {what}); the run stopped and "
                    "resumes where it was with `headrace resume`"
                ) from None
            time.sleep(pause)
            pause = min(pause * 2, 5.0)
            continue
        if failed is not None:
            _log.warning("headrace: %s at %s answers again", role, scrub_url(url))
        return result
