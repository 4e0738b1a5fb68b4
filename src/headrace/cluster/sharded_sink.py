"""The parent run's view of the sink of a run on a cluster: each shard writes its own
part, joined into the sink when the run ends."""

from __future__ import annotations

from typing import Any

from ..errors import HeadraceError
from ..io.records import Recovered

__all__ = ["ShardedSink", "sharded"]


def sharded(sink: Any) -> bool:
    """Whether ``sink`` can be split across workers (files, part directories, tables)."""
    return all(
        callable(getattr(sink, name, None)) for name in ("for_shard", "join_shards", "clear_shards")
    )


class ShardedSink:
    """The parent run's view of a sink whose shards write it: checked and cleared when
    the run starts, joined when every shard finished, never written here."""

    keeps_journal = False
    flush_items = 1
    flush_interval_s = 1.0

    def __init__(self, sink: Any) -> None:
        self.sink = sink

    def describe(self) -> dict[str, Any]:
        """The real sink's description (a resume must name the same one)."""
        described: dict[str, Any] = self.sink.describe()
        return described

    def lock_path(self) -> Any:
        """The real sink's lock file, if it has one: the driver holds it for the run."""
        locate = getattr(self.sink, "lock_path", None)
        return locate() if callable(locate) else None

    def encode(self, key: str, value: Any) -> Any:
        """Never called: the shards encode their outputs."""
        raise HeadraceError("the parent of a sharded run writes nothing itself")

    def open(self, state: dict[str, Any], *, overwrite: bool = False) -> Recovered | None:
        """A new run: refuse output already there (unless ``overwrite``) and remove what
        an earlier run's shards left; a resumed one (``sharded`` committed): nothing,
        but a finished one whose shard files are gone (``joined``) checks its file.

        Raises:
            SinkDamaged: the joined file is missing or changed.
        """
        if not state.get("sharded"):
            self.sink.open({}, overwrite=overwrite)
            self.sink.close()
            self.sink.clear_shards()
        elif state.get("joined"):
            self.sink.check_joined(state)
        return None

    def set_aside(self) -> str | None:
        """Nothing here: each shard sets its own part aside."""
        return None

    def write(self, records: list[Any], journal: bytes | None = None) -> dict[str, Any]:
        """The parent's only state: that the run was split (its shards own the rest)."""
        return {"sharded": True}

    def close(self) -> None:
        """Nothing stays open."""
        return None
