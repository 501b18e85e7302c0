"""Recommendation metrics (``metrics``): ranking @K, beyond accuracy @K (coverage, novelty,
diversity, personalisation) and AUC; per-user values and a paired bootstrap over users
(``significance``); metrics per slice (``slices``)."""

from recpipe.evaluation.metrics import (BEYOND_ACCURACY, METRICS, PER_USER, Hits, auc, beyond_accuracy, coverage,
                                        evaluate, novelty, per_user, rank_hits)
from recpipe.evaluation.significance import paired_bootstrap

__all__ = ["BEYOND_ACCURACY", "METRICS", "PER_USER", "Hits", "auc", "beyond_accuracy", "coverage", "evaluate",
           "novelty", "paired_bootstrap", "per_user", "rank_hits"]
