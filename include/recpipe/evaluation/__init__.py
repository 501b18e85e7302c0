"""Ranking metrics (``metrics``) for any recommendations table against any ground truth."""

from recpipe.evaluation.metrics import METRICS, Hits, coverage, evaluate, rank_hits

__all__ = ["METRICS", "Hits", "coverage", "evaluate", "rank_hits"]
