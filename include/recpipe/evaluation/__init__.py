"""Recommendation metrics (``metrics``): ranking @K, catalog @K (coverage, novelty) and AUC;
per-user values and a paired bootstrap over users (``significance``)."""

from recpipe.evaluation.metrics import (METRICS, PER_USER, Hits, auc, coverage, evaluate, novelty, per_user,
                                        rank_hits)
from recpipe.evaluation.significance import paired_bootstrap

__all__ = ["METRICS", "PER_USER", "Hits", "auc", "coverage", "evaluate", "novelty", "paired_bootstrap", "per_user",
           "rank_hits"]
