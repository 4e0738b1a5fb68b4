"""The ``headrace`` command line, one module per command group.

Heavy libraries are never imported at start-up: ``headrace --version`` and
``headrace info`` stay fast however many extras are installed.
"""

from __future__ import annotations

from . import (  # noqa: F401  (each registers its commands)
    cache,
    continuing,
    estimates,
    observe,
    recipes,
    runs,
    status,
    tools,
    tune,
)
from .app import EXIT_DEAD, EXIT_STOPPED, app

__all__ = ["EXIT_DEAD", "EXIT_STOPPED", "app", "main"]


def main() -> None:
    """Entry point of the ``headrace`` console script."""
    app()
