"""MovieLens in each of its layouts reads into the same contract tables."""

from __future__ import annotations

from datetime import datetime, timezone
import pytest

from recpipe import contracts
from recpipe.sources import movielens
from recpipe.errors import DataError

from tests.conftest import SHARED_DATA

ML100K = SHARED_DATA / "ml-100k"


def _check(data: movielens.MovieLens) -> None:
    assert data.events.schema.names == list(contracts.EVENTS.names)
    assert set(data.events["event_type"].to_pylist()) == {"rating"}
    assert data.items.schema.names == list(contracts.ITEMS.names)
    assert data.users.schema.names == list(contracts.USERS.names)


def test_ml1m_dat_files(tmp_path):
    (tmp_path / "ratings.dat").write_text("1::1193::5::978300760\n1::661::3::978302109\n2::1193::4::978298413\n")
    (tmp_path / "movies.dat").write_bytes("1193::One Flew Over the Cuckoo's Nest (1975)::Drama\n"
                                          "661::James and the Giant Peach (1996)::Animation|Children's|Musical\n"
                                          .encode("latin-1"))
    (tmp_path / "users.dat").write_text("1::F::1::10::48067\n2::M::56::16::70072\n")
    data = movielens.read(tmp_path)
    _check(data)
    first = data.events.slice(0, 1).to_pylist()[0]
    assert first["user_id"] == "1" and first["item_id"] == "1193" and first["value"] == 5.0
    assert first["event_ts"] == datetime.fromtimestamp(978300760, timezone.utc)
    peach = data.items.to_pylist()[1]
    assert (peach["category"], peach["title"], peach["release_year"]) == ("Animation", "James and the Giant Peach", 1996)
    assert peach["text"] == "James and the Giant Peach | Animation Children's Musical"
    assert data.users.to_pylist()[1] == {"user_id": "2", "age": 56, "gender": "M", "occupation": "16"}


def test_original_ml100k_files(tmp_path):
    (tmp_path / "u.data").write_text("196\t242\t3\t881250949\n186\t302\t3\t891717742\n")
    flags = ["0"] * 19
    flags[3] = flags[4] = "1"  # Animation, Children's
    (tmp_path / "u.item").write_text("242|Kolya (1996)|24-Jan-1997||http://x|" + "|".join(flags) + "\n")
    (tmp_path / "u.user").write_text("196|49|M|writer|55105\n")
    data = movielens.read(tmp_path)
    _check(data)
    assert data.items.to_pylist()[0]["category"] == "Animation"
    assert data.items.to_pylist()[0]["release_year"] == 1996


def test_the_shared_recbole_copy_of_ml100k():
    data = movielens.read(ML100K)
    _check(data)
    assert (data.events.num_rows, data.items.num_rows, data.users.num_rows) == (100_000, 1682, 943)
    toy_story = data.items.to_pylist()[0]
    assert (toy_story["item_id"], toy_story["title"], toy_story["category"]) == ("1", "Toy Story", "Animation")


def test_a_folder_without_movielens_files_is_refused(tmp_path):
    with pytest.raises(DataError, match="holds no MovieLens files"):
        movielens.read(tmp_path)
