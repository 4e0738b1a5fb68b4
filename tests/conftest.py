"""Shared test setup: asyncio debug mode, and small helpers."""

from __future__ import annotations

import os

# asyncio reads this whenever a loop is created: every run in the tests is checked
# for never-awaited coroutines and non-threadsafe calls.
os.environ.setdefault("PYTHONASYNCIODEBUG", "1")
