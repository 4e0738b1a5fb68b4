"""``hr.Ray``: run a durable run's items on a Ray cluster (or a local one)."""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..errors import HeadraceError, PipelineError
from ..loading.extras import require
from ..values.checks import positive_int

if TYPE_CHECKING:
    from ..engine.plan import RunPlan
    from ..engine.result import RunResult

__all__ = ["Ray"]

MAX_SHARD = 100_000
"""The largest default shard: a worker that dies loses at most one commit of it, but a
resume reads the shard's range again up to where it stopped."""


@dataclass(frozen=True, slots=True)
class Ray:
    """Run on Ray: the source is split into shards of consecutive items, and a pool of
    worker actors runs them, each shard a durable run of the local runner (its own
    lease, window, limits and part of the sink). Give it as ``hr.run(...,
    backend=hr.Ray(workers=8))`` or ``headrace run ... --backend ray --workers 8``.

    Args:
        address: the cluster to join (``"auto"``, ``"ray://host:10001"``); ``None``
            joins the one this process already started, or starts a local one.
        workers: worker actors, each running one shard at a time.
        shard_size: items a shard holds; default: the items split four ways per
            worker, at most :data:`MAX_SHARD`, so that the work balances and a shard
            lost with its worker is small.
        num_cpus: CPUs Ray reserves for each worker.
        num_gpus: GPUs Ray reserves for each worker (for model steps; 0 for none).
        runtime_env: Ray's runtime environment for joining a remote cluster (``pip``,
            ``py_modules``, ``env_vars`` ...), so that its nodes can import the
            pipeline's modules; a cluster started here gets this process's import path.

    Raises:
        PipelineError: a setting is out of range.
        MissingExtra: Ray is not installed (``pip install 'headrace[ray]'``).
    """

    address: str | None = None
    workers: int = 2
    shard_size: int | None = None
    num_cpus: float = 1.0
    num_gpus: float = 0.0
    runtime_env: dict[str, Any] | None = None

    def __post_init__(self) -> None:
        positive_int(self.workers, "workers")
        if self.shard_size is not None:
            positive_int(self.shard_size, "shard_size")
        if not (isinstance(self.num_cpus, int | float) and self.num_cpus >= 0):
            raise PipelineError(f"num_cpus must be a number >= 0, got {self.num_cpus!r}")
        if not (isinstance(self.num_gpus, int | float) and self.num_gpus >= 0):
            raise PipelineError(f"num_gpus must be a number >= 0, got {self.num_gpus!r}")
        require({"backend=hr.Ray(...)": ("ray",)})

    def shard_size_for(self, total: int) -> int:
        """The shard size for a source of ``total`` items."""
        if self.shard_size is not None:
            return self.shard_size
        return max(1, min(MAX_SHARD, math.ceil(total / (self.workers * 4))))

    def describe(self) -> dict[str, Any]:
        """The settings, stored with the run (``headrace resume`` runs it the same way)."""
        return {
            "kind": "ray",
            "address": self.address,
            "workers": self.workers,
            "shard_size": self.shard_size,
            "num_cpus": self.num_cpus,
            "num_gpus": self.num_gpus,
            "runtime_env": self.runtime_env,
        }

    @classmethod
    def from_description(cls, description: Any) -> Ray:
        """The backend a run was stored with (read back from its store: checked).

        Raises:
            HeadraceError: the description is not one :meth:`describe` writes.
        """
        if not isinstance(description, dict) or description.get("kind") != "ray":
            raise HeadraceError(f"the run store's backend is not a Ray one: {description!r}")
        settings = {k: v for k, v in description.items() if k != "kind"}
        try:
            return cls(**settings)
        except (TypeError, PipelineError) as exc:
            raise HeadraceError(f"the run store's backend: {exc}") from None

    def connect(self) -> None:
        """Join (or start) the cluster, once per process."""
        import ray

        if not ray.is_initialized():
            ray.init(
                address=self.address,
                runtime_env=self.runtime_env,
                logging_level=logging.WARNING,
                log_to_driver=True,
            )

    async def execute(self, plan: RunPlan) -> RunResult:
        """Carry out ``plan`` on the cluster (see :mod:`headrace.cluster.driver`)."""
        from .sharded_run import run_sharded

        return await run_sharded(self, plan)
