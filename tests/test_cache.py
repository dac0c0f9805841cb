"""The parsed-CSV cache: an entry is trusted only when it matches the file it claims to be."""

from __future__ import annotations

import numpy as np
import pytest

from src.core.files import sha256
from src.data.cache import CACHE_VERSION, cache_entry, save_arrays
from src.data.loading import load_datasets, read_train
from tests.synthetic import write_dataset


def train_entry(cache, data):
    return cache_entry(cache, "train", sha256(data / "train.csv"))


def source_fields(data, version=CACHE_VERSION, kind="train"):
    path = data / "train.csv"
    return {
        "source_kind": np.array(kind),
        "source_sha256": np.array(sha256(path)),
        "source_size": np.array(path.stat().st_size, dtype=np.int64),
        "cache_version": np.array(version, dtype=np.int64),
    }


def forged_arrays(data):
    """Valid arrays that differ from what the file holds: served only if the entry is trusted."""
    images, labels = read_train(data / "train.csv")
    return {"images": 255 - images, "labels": (labels + 1) % 10}


def assert_parsed_from_the_file(datasets, data):
    images, labels = read_train(data / "train.csv")
    np.testing.assert_array_equal(datasets.train_images, images)
    np.testing.assert_array_equal(datasets.train_labels, labels)


def test_a_matching_entry_is_used(tmp_path, tiny_data):
    """The control for the tests below: an entry that records its source is served, not re-parsed."""
    cache = tmp_path / "cache"
    load_datasets(tiny_data, cache)
    forged = forged_arrays(tiny_data)
    save_arrays(train_entry(cache, tiny_data), {**forged, **source_fields(tiny_data)})
    datasets = load_datasets(tiny_data, cache)
    np.testing.assert_array_equal(datasets.train_images, forged["images"])
    np.testing.assert_array_equal(datasets.train_labels, forged["labels"])


def test_a_foreign_entry_renamed_to_the_right_name_is_ignored(tmp_path, tiny_data):
    cache = tmp_path / "cache"
    other = write_dataset(tmp_path / "other", seed=1)
    load_datasets(other, cache)
    train_entry(cache, other).replace(train_entry(cache, tiny_data))
    assert_parsed_from_the_file(load_datasets(tiny_data, cache), tiny_data)


@pytest.mark.parametrize(
    "fields",
    [
        {},  # an entry of an older version, without its source
        {"cache_version": np.array(CACHE_VERSION + 1)},
        {"source_size": np.array(1)},
        {"source_kind": np.array("test")},
        {"source_sha256": np.array("0" * 64)},
    ],
)
def test_an_entry_claiming_another_source_is_ignored(tmp_path, tiny_data, fields):
    cache = tmp_path / "cache"
    load_datasets(tiny_data, cache)
    claimed = {**source_fields(tiny_data), **fields} if fields else {}
    save_arrays(train_entry(cache, tiny_data), {**forged_arrays(tiny_data), **claimed})
    assert_parsed_from_the_file(load_datasets(tiny_data, cache), tiny_data)


@pytest.mark.parametrize("kept", [0, 10, 100, 0.5, 0.9])
def test_a_truncated_entry_is_parsed_again_and_replaced(tmp_path, tiny_data, kept):
    cache = tmp_path / "cache"
    load_datasets(tiny_data, cache)
    entry = train_entry(cache, tiny_data)
    whole = entry.read_bytes()
    entry.write_bytes(whole[: int(kept * len(whole)) if isinstance(kept, float) else kept])
    assert_parsed_from_the_file(load_datasets(tiny_data, cache), tiny_data)
    assert entry.read_bytes() == whole


@pytest.mark.parametrize(
    "damage",
    [
        lambda arrays: {**arrays, "images": arrays["images"].astype(np.int64)},
        lambda arrays: {**arrays, "images": arrays["images"][:, :783]},
        lambda arrays: {**arrays, "images": arrays["images"].reshape(-1, 28, 28)},
        lambda arrays: {**arrays, "labels": arrays["labels"].astype(np.int32)},
        lambda arrays: {**arrays, "labels": arrays["labels"][:-1]},
        lambda arrays: {**arrays, "labels": arrays["labels"] + 10},
        lambda arrays: {"images": arrays["images"]},
    ],
)
def test_wrong_shapes_dtypes_or_values_are_parsed_again(tmp_path, tiny_data, damage):
    cache = tmp_path / "cache"
    load_datasets(tiny_data, cache)
    save_arrays(train_entry(cache, tiny_data), {**damage(forged_arrays(tiny_data)), **source_fields(tiny_data)})
    assert_parsed_from_the_file(load_datasets(tiny_data, cache), tiny_data)


def test_a_lone_array_file_at_the_entry_name_is_ignored(tmp_path, tiny_data):
    cache = tmp_path / "cache"
    cache.mkdir()
    with open(train_entry(cache, tiny_data), "wb") as stream:
        np.save(stream, np.zeros((80, 784), dtype=np.uint8))
    assert_parsed_from_the_file(load_datasets(tiny_data, cache), tiny_data)
