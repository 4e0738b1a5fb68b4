"""``hr.estimate`` and ``headrace estimate``: what a run will cost and take on each
tier, p10 / p50 / p90, from a stratified sample run for real (or against
``headrace sim``) before the run.

``sampling`` draws the sample; ``pilot`` runs it in chunks and measures each step;
``projection`` makes the whole run of it, tier by tier; ``outlook`` holds
:func:`estimate` and the :class:`Estimate` it returns (kept with the run)."""

from .outlook import ESTIMATE_FILE, Estimate, estimate
from .projection import Interval, TierEstimate

__all__ = ["ESTIMATE_FILE", "Estimate", "Interval", "TierEstimate", "estimate"]
