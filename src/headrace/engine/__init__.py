"""The engine: what runs a pipeline.

Binding declarations to a run (``runtime``, ``call`` with its ``Gate``,
``compose_run``, ``graph_run``), the batcher and executors, reading the source
(``feed``), the window of lanes carrying items to their outcomes (``lanes``),
``runner`` (``run``, ``arun``) with its ``RunOptions``, progress, the result and
the bottleneck line. See ``docs/architecture.md``.
"""
