"""Recommendation metrics (``metrics``): ranking @K, catalog @K (coverage, novelty) and AUC."""

from recpipe.evaluation.metrics import METRICS, Hits, auc, coverage, evaluate, novelty, rank_hits

__all__ = ["METRICS", "Hits", "auc", "coverage", "evaluate", "novelty", "rank_hits"]
