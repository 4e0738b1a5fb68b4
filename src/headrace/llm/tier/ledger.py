"""The batch ledger: every provider batch a run intends, submits and collects, on disk.

It lives in the run's folder (``run_dir/batches/``), beside the run store, one
:class:`Intent` per batch:

- ``<intent>.in.jsonl``: the requests, written (and fsynced) before anything is
  sent, so a batch can be uploaded again after a kill without its items;
- ``<intent>.json``: the intent's state (``intended`` → ``uploaded`` →
  ``submitted`` → ``collected``, or ``refused``), replaced atomically at each step
  *before* the next thing is sent: whatever kills the process, the next session
  knows what may exist at the provider and looks for it before sending anything;
- ``<intent>.out.jsonl``: the answers and errors, downloaded once when the batch
  ended, so a request answered once is never fetched or paid for again.

The ledger is read back as untrusted input: a file that is not what this module
wrote is a :class:`~headrace.errors.StorageError` naming it, never a crash.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ...errors import StorageError
from ...values.atomic import replace_atomically

__all__ = ["STATES", "Intent", "Ledger"]

STATES = ("intended", "uploaded", "submitted", "collected", "refused")
"""An intent's states, in order (``refused``: the provider failed the batch whole)."""

_ID = re.compile(r"^[0-9a-f]{32}$")
_SAFE = re.compile(r"^[A-Za-z0-9_.:-]{1,200}$")


@dataclass(slots=True)
class Intent:
    """One provider batch a run intends, and how far it has got.

    Attributes:
        id: the intent's id (32 hex digits): the uploaded file is named after it and
            the batch carries it in its metadata, so either can be found again.
        step: the step whose requests it holds.
        created: when it was recorded (Unix seconds).
        requests: the requests' ``custom_id``\\s, in the file's order.
        tokens: their input tokens, as estimated (what the provider's queue holds).
        state: one of :data:`STATES`.
        file_id: the uploaded file's id, once uploaded.
        batch_id: the provider's batch id, once submitted.
        status: the batch's status as the provider last said it.
        creates: create requests sent for it (more than one only after an answer
            was lost and no batch was found for it).
        error: why the provider refused the batch whole (``refused``).
    """

    id: str
    step: str
    created: float
    requests: list[str]
    tokens: int
    state: str = "intended"
    file_id: str | None = None
    batch_id: str | None = None
    status: str = ""
    creates: int = 0
    error: str = ""
    counts: dict[str, int] = field(default_factory=dict)

    @staticmethod
    def new_id() -> str:
        """A fresh intent id."""
        return uuid.uuid4().hex

    @property
    def open(self) -> bool:
        """Whether its answers are still to come (it is not collected or refused)."""
        return self.state not in ("collected", "refused")


def _checked(data: Any, where: Path) -> Intent:
    """An intent read from ``where``, every field checked."""

    def bad(field_name: str) -> StorageError:
        return StorageError(
            f"{where}: field {field_name!r} is damaged; the batch ledger was changed"
        )

    if not isinstance(data, dict):
        raise StorageError(f"{where}: not an intent of the batch ledger")
    names = {f.name for f in dataclasses.fields(Intent)}
    if set(data) != names:
        raise StorageError(f"{where}: fields {sorted(set(data) ^ names)} do not belong")
    if not isinstance(data["id"], str) or not _ID.match(data["id"]) or where.stem != data["id"]:
        raise bad("id")
    if data["state"] not in STATES:
        raise bad("state")
    for name in ("step", "status", "error"):
        if not isinstance(data[name], str):
            raise bad(name)
    for name in ("file_id", "batch_id"):
        if data[name] is not None and not (isinstance(data[name], str) and _SAFE.match(data[name])):
            raise bad(name)
    for name in ("tokens", "creates"):
        if type(data[name]) is not int or data[name] < 0:
            raise bad(name)
    if not isinstance(data["created"], int | float) or isinstance(data["created"], bool):
        raise bad("created")
    requests = data["requests"]
    if not isinstance(requests, list) or not all(
        isinstance(r, str) and _SAFE.match(r) for r in requests
    ):
        raise bad("requests")
    counts = data["counts"]
    if not isinstance(counts, dict) or not all(
        isinstance(k, str) and type(v) is int for k, v in counts.items()
    ):
        raise bad("counts")
    if data["state"] in ("uploaded", "submitted") and data["file_id"] is None:
        raise bad("file_id")
    if data["state"] == "submitted" and data["batch_id"] is None:
        raise bad("batch_id")
    return Intent(**data)


class Ledger:
    """The batch ledger of the run kept in ``run_dir``."""

    def __init__(self, run_dir: str | os.PathLike[str]) -> None:
        self.folder = Path(run_dir) / "batches"
        if self.folder.is_symlink():
            raise StorageError(f"{self.folder} is a link; the batch ledger is never followed out")
        self.folder.mkdir(parents=True, exist_ok=True)

    def _path(self, intent_id: str, suffix: str) -> Path:
        if not _ID.match(intent_id):
            raise StorageError(f"not an intent id: {intent_id!r}")
        return self.folder / f"{intent_id}{suffix}"

    def intents(self) -> list[Intent]:
        """Every intent of the run, oldest first.

        Raises:
            StorageError: a ledger file that is not what headrace wrote.
        """
        found = []
        for path in self.folder.glob("*.json"):
            if path.is_symlink():
                raise StorageError(f"{path} is a link; the batch ledger is never followed out")
            try:
                data = json.loads(path.read_bytes())
            except (OSError, ValueError) as exc:
                raise StorageError(
                    f"{path}: unreadable ({exc}); the batch ledger was changed"
                ) from None
            found.append(_checked(data, path))
        return sorted(found, key=lambda intent: (intent.created, intent.id))

    def save(self, intent: Intent) -> None:
        """Record ``intent`` as it is now (atomically)."""
        content = json.dumps(dataclasses.asdict(intent), sort_keys=True).encode()
        replace_atomically(self._path(intent.id, ".json"), content)

    def write_input(self, intent_id: str, content: bytes) -> None:
        """Keep the intent's requests file (before the intent is recorded)."""
        replace_atomically(self._path(intent_id, ".in.jsonl"), content)

    def read_input(self, intent_id: str) -> bytes:
        """The intent's requests file, as written."""
        return self._read(self._path(intent_id, ".in.jsonl"))

    def write_output(self, intent_id: str, content: bytes) -> None:
        """Keep what the batch answered (its output and error files, one after the other)."""
        replace_atomically(self._path(intent_id, ".out.jsonl"), content)

    def input_rows(self, intent_id: str) -> list[dict[str, Any]]:
        """The requests written for the intent (``custom_id``, ``body`` ...), in order."""
        rows: list[dict[str, Any]] = json.loads(
            "[" + ",".join(self.read_input(intent_id).decode().splitlines()) + "]"
        )
        return rows

    def output_rows(self, intent_id: str) -> Iterator[tuple[str, dict[str, Any]]]:
        """The answers kept for the intent, as ``(custom_id, row)``.

        Raises:
            StorageError: a line that is not an answer of the provider's.
        """
        path = self._path(intent_id, ".out.jsonl")
        for number, line in enumerate(self._read(path).splitlines(), 1):
            try:
                row = json.loads(line)
            except ValueError:
                raise StorageError(
                    f"{path} line {number}: not JSON; the batch ledger was changed"
                ) from None
            if not isinstance(row, dict) or not isinstance(row.get("custom_id"), str):
                raise StorageError(f"{path} line {number}: field 'custom_id' is missing")
            yield row["custom_id"], row

    def _read(self, path: Path) -> bytes:
        if path.is_symlink():
            raise StorageError(f"{path} is a link; the batch ledger is never followed out")
        try:
            return path.read_bytes()
        except OSError as exc:
            raise StorageError(f"{path}: unreadable ({exc.strerror})") from None
