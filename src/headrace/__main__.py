"""``python -m headrace``: the command line, as the ``headrace`` script."""

from .cli import main

if __name__ == "__main__":
    main()
