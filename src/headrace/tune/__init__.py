"""Measuring a pipeline on a sample: ``headrace profile`` (where the time goes) and
``headrace bench`` (sweep one setting and find the knee)."""
