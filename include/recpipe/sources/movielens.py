"""MovieLens, read into the input contract and delivered to the landing zone.

Three layouts of the same data are understood, found by file name in the folder given:

- RecBole atomic files (``*.inter``, ``*.item``, ``*.user``; tab-separated, ``name:type`` header),
  as in ``../shared/data/ml-100k/``;
- ML-1M and ML-10M (``ratings.dat``, ``movies.dat``, ``users.dat``; ``::``-separated);
- the original ML-100K (``u.data`` tab-separated, ``u.item``/``u.user`` ``|``-separated).

Every rating becomes one ``rating`` event (value = stars) in ``raw/events/dt=<UTC day of its
timestamp>``; the catalog (first genre as category, title, genres in ``text``, release year)
and the user profiles land once, in the partition of the first day.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa

from recpipe import contracts
from recpipe.errors import DataError
from recpipe.io import landing
from recpipe.io.partitions import Store

log = logging.getLogger(__name__)

ML100K_GENRES = ("unknown Action Adventure Animation Children's Comedy Crime Documentary Drama Fantasy "
                 "Film-Noir Horror Musical Mystery Romance Sci-Fi Thriller War Western").split()


@dataclass(frozen=True)
class MovieLens:
    """One release as contract tables: events (ratings), items and users."""

    events: pa.Table
    items: pa.Table
    users: pa.Table


def read(path: str | Path) -> MovieLens:
    """Read the release in folder ``path`` (any of the three layouts)."""
    root = Path(path)
    if not root.is_dir():
        raise DataError(f"{root} is not a folder: give the folder that holds the MovieLens files.")
    if inter := sorted(root.glob("*.inter")):
        ratings, movies, users = _read_atomic(inter[0], root)
    elif (root / "ratings.dat").exists():
        ratings, movies, users = _read_dat(root)
    elif (root / "u.data").exists():
        ratings, movies, users = _read_100k(root)
    else:
        raise DataError(
            f"{root} holds no MovieLens files: expected *.inter/*.item/*.user (RecBole), "
            "ratings.dat/movies.dat/users.dat (ML-1M) or u.data/u.item/u.user (ML-100K)."
        )
    log.info("read %d ratings, %d movies, %d users from %s", len(ratings), len(movies), len(users), root)
    return MovieLens(_events(ratings), _items(movies), _users(users))


def _read_atomic(inter: Path, root: Path) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    def load(file: Path) -> pd.DataFrame:
        df = pd.read_csv(file, sep="\t", dtype=str, keep_default_na=False, quoting=3)
        return df.rename(columns=lambda c: c.split(":")[0])

    ratings = load(inter)
    items = load(inter.with_suffix(".item")) if inter.with_suffix(".item").exists() else pd.DataFrame()
    users = load(inter.with_suffix(".user")) if inter.with_suffix(".user").exists() else pd.DataFrame()
    movies = pd.DataFrame({
        "item_id": items.get("item_id", pd.Series(dtype=str)),
        "title": items.get("movie_title", pd.Series(dtype=str)),
        "year": items.get("release_year", pd.Series(dtype=str)),
        "genres": items.get("class", pd.Series(dtype=str)).str.split(" "),
    })
    return ratings[["user_id", "item_id", "rating", "timestamp"]], movies, users


def _read_dat(root: Path) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    def load(name: str, columns: list[str]) -> pd.DataFrame:
        file = root / name
        if not file.exists():
            return pd.DataFrame(columns=columns)
        lines = file.read_bytes().decode("latin-1").splitlines()
        return pd.DataFrame([line.split("::") for line in lines if line], columns=columns)

    ratings = load("ratings.dat", ["user_id", "item_id", "rating", "timestamp"])
    movies = load("movies.dat", ["item_id", "title", "genres"])
    title_year = movies["title"].str.extract(r"^(.*) \((\d{4})\)\s*$")
    movies = pd.DataFrame({"item_id": movies["item_id"], "title": title_year[0].fillna(movies["title"]),
                           "year": title_year[1], "genres": movies["genres"].str.split("|")})
    users = load("users.dat", ["user_id", "gender", "age", "occupation", "zip_code"])
    return ratings, movies, users


def _read_100k(root: Path) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    ratings = pd.read_csv(root / "u.data", sep="\t", names=["user_id", "item_id", "rating", "timestamp"], dtype=str)
    raw = pd.read_csv(root / "u.item", sep="|", header=None, dtype=str, encoding="latin-1")
    flags = raw.iloc[:, 5:5 + len(ML100K_GENRES)].astype(int).to_numpy()
    title_year = raw[1].str.extract(r"^(.*) \((\d{4})\)\s*$")
    movies = pd.DataFrame({"item_id": raw[0], "title": title_year[0].fillna(raw[1]), "year": title_year[1],
                           "genres": [[g for g, f in zip(ML100K_GENRES, row) if f] for row in flags]})
    users = pd.read_csv(root / "u.user", sep="|", names=["user_id", "age", "gender", "occupation", "zip_code"], dtype=str)
    return ratings, movies, users


def _events(ratings: pd.DataFrame) -> pa.Table:
    ts = pd.to_datetime(pd.to_numeric(ratings["timestamp"]).astype("int64"), unit="s", utc=True)
    return landing.conform(pa.table({
        "user_id": pa.array(ratings["user_id"].astype(str)),
        "item_id": pa.array(ratings["item_id"].astype(str)),
        "event_type": pa.array(np.full(len(ratings), "rating")),
        "event_ts": pa.array(ts, pa.timestamp("us", tz="UTC")),
        "value": pa.array(pd.to_numeric(ratings["rating"]).astype(float)),
        "session_id": pa.nulls(len(ratings), pa.string()),
    }), contracts.EVENTS, "movielens ratings")


def _items(movies: pd.DataFrame) -> pa.Table:
    genres = movies["genres"].apply(lambda g: [x for x in g if x] if isinstance(g, list) else [])
    n = len(movies)
    return landing.conform(pa.table({
        "item_id": pa.array(movies["item_id"].astype(str)),
        "category": pa.array([g[0] if g else None for g in genres], pa.string()),
        "title": pa.array(movies["title"].astype(str)),
        "text": pa.array([f"{t} | {' '.join(g)}" for t, g in zip(movies["title"], genres)]),
        "release_year": pa.array(pd.to_numeric(movies["year"], errors="coerce").astype("Int32")),
        "available": pa.array(np.ones(n, dtype=bool)),
    }), contracts.ITEMS, "movielens items")


def _users(users: pd.DataFrame) -> pa.Table:
    if users.empty:
        return landing.conform(pa.table({"user_id": pa.array([], pa.string())}), contracts.USERS, "movielens users")
    return landing.conform(pa.table({
        "user_id": pa.array(users["user_id"].astype(str)),
        "age": pa.array(pd.to_numeric(users["age"], errors="coerce").astype("Int32")),
        "gender": pa.array(users["gender"].astype(str)),
        "occupation": pa.array(users["occupation"].astype(str)),
    }), contracts.USERS, "movielens users")


def import_to_store(store: Store, path: str | Path) -> list[str]:
    """Deliver a MovieLens release into ``raw/``: one events partition per UTC day."""
    data = read(path)
    return landing.write_days(store, data.events, data.items, f"MovieLens {path}", data.users)
