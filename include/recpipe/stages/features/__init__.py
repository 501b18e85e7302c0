"""The features stage: clean events → point-in-time feature tables in ``features/dt=D``.

    vocab   id vocabularies (append-only)
    daily   one day's events reduced to aggregates (incremental state)
    window  the window of aggregates behind a date, and what is derived from it
    tables  the feature tables assembled from those results
    build   the stage: make the aggregates fresh, derive, commit
"""

from recpipe.stages.features.build import (SEQUENCE_LENGTH, FeatureResult, build_features, pending_days,
                                           read_clean_window, window_dates)

__all__ = ["SEQUENCE_LENGTH", "FeatureResult", "build_features", "pending_days", "read_clean_window", "window_dates"]
