"""The training stage: features/dt=D → a candidate model in ``models/<name>/<version>/``.

Uses the GPU when TensorFlow sees one (several: ``MirroredStrategy``; mixed precision on
GPU), the CPU otherwise. Deterministic for a seed. Each epoch is logged with its metrics.
"""

from __future__ import annotations

import dataclasses
import logging
import time

from recpipe.artifacts import registry
from recpipe.artifacts.features import Features
from recpipe.config import RunParams
from recpipe.io.partitions import Store
from recpipe.models import FitConfig, model_class

log = logging.getLogger(__name__)


def fit_config(params: RunParams) -> FitConfig:
    """The training knobs of a run's params."""
    return FitConfig(**{f.name: getattr(params, f.name) for f in dataclasses.fields(FitConfig)})


def candidate(dt: str, params: RunParams) -> registry.Ref:
    """The ref of the candidate these params train for ``dt`` (same params, same version)."""
    return registry.ref(params.model, registry.version(dt, params.as_dict()))


def warm_start_from(store: Store, dt: str, params: RunParams) -> registry.Ref | None:
    """The champion to continue from: the one serving before ``dt`` (point in time), if asked."""
    if not params.warm_start or params.model == "popularity":
        return None
    ref = registry.champion(store, params.model, before=dt)
    if ref is None:
        log.info("warm_start: no %s champion before %s yet, training from scratch", params.model, dt)
    else:
        log.info("warm_start: continuing from champion %s", ref["version"])
    return ref


def train(store: Store, dt: str, params: RunParams) -> registry.Ref:
    """Train a candidate of ``params.model`` on ``features/dt=D`` and save it; returns its ref."""
    from recpipe.models import keras_fit  # TensorFlow loads only when training runs

    features = Features(store, dt)
    data = features.training_data()
    device = keras_fit.setup_device(params.seed)
    log.info("training %s on %d interactions (%d users, %d items), device: %s",
             params.model, len(data.users), data.n_users, data.n_items, device)
    started = time.monotonic()
    initial = warm_start_from(store, dt, params)
    with keras_fit.strategy().scope():
        model = model_class(params.model)()
        summary = model.fit(data, fit_config(params), registry.load(store, initial) if initial else None)
    seconds = time.monotonic() - started
    meta = {
        "dt": dt,
        "window_start": features.meta["window"],
        "params": params.as_dict(),
        "seed": params.seed,
        "training": summary,
        "train_seconds": round(seconds, 2),
        "device": device,
        "warm_start_from": initial,
        "n_users": data.n_users,
        "n_items": data.n_items,
        "versions": keras_fit.versions(),
    }
    ref = registry.save(store, model, candidate(dt, params)["version"], meta)
    log.info("trained %s in %.1fs: %s", ref["prefix"], seconds, summary)
    return ref
