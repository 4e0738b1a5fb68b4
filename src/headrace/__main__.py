"""``python -m headrace``: the command line, as the ``headrace`` script."""

from .cli import main

main()
