"""Seeing a run: its report page, the live page, and (``headrace report`` / ``ui``)."""
