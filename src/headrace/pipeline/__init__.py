"""Declarations: what a pipeline is, holding no running state.

Step options (``options``), steps (``step``), compositions (``compose``),
graphs (``graph``) and ``with_input`` (``keep``). The engine
(:mod:`headrace.engine`) binds them to a run.
"""
