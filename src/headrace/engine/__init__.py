"""The engine: what runs a pipeline.

Binding declarations to a run (``context``: the binder table and the run's
context; ``call`` with its ``Gate``, ``cache_stage``, ``compose_run``,
``graph_run``), the batcher and executors, reading the source (``feed``), the
window of lanes carrying items to their outcomes (``lanes``), ``runner`` (``run``,
``arun``) with its ``RunOptions``, and the result. Observing a run lives apart, in
:mod:`headrace.metrics`. See ``docs/architecture.md``.
"""
