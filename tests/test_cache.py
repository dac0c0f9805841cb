"""The parsed-CSV cache: never stale, where it lives, and an entry trusted only when it matches its file."""

from __future__ import annotations

import io
import os
import zipfile

import numpy as np
import pytest

from src.core.files import sha256
from src.data import loading as data_module
from src.data.cache import CACHE_ENV, CACHE_VERSION, MAX_CACHE_ENTRIES, cache_entry, prune_cache, save_arrays
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


def test_an_entry_whose_header_claims_a_huge_array_is_parsed_again_and_replaced(tmp_path, tiny_data):
    cache = tmp_path / "cache"
    load_datasets(tiny_data, cache)
    entry = train_entry(cache, tiny_data)
    whole = entry.read_bytes()
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(header, {"descr": "|u1", "fortran_order": False, "shape": (10**12, 784)})
    with zipfile.ZipFile(entry, "w") as archive:
        archive.writestr("images.npy", header.getvalue() + b"\0" * 784)
    # Read through the one array reader: refused from its header, then the file parsed and the entry rewritten.
    assert_parsed_from_the_file(load_datasets(tiny_data, cache), tiny_data)
    assert entry.read_bytes() == whole


def test_cache_hit_returns_the_same_arrays_without_parsing(tmp_path, monkeypatch):
    data = write_dataset(tmp_path / "data")
    cache = tmp_path / "cache"
    parsed = data_module.load_datasets(data, cache_dir=cache)
    assert cache_entry(cache, "train", sha256(data / "train.csv")).is_file()

    def no_parsing(path):
        raise AssertionError(f"{path} was parsed on a cache hit")

    monkeypatch.setattr(data_module, "read_train", no_parsing)
    monkeypatch.setattr(data_module, "read_test", no_parsing)
    cached = data_module.load_datasets(data, cache_dir=cache)
    assert cached.inputs == parsed.inputs
    for name in ("train_images", "train_labels", "test_images"):
        expected, found = getattr(parsed, name), getattr(cached, name)
        assert found.dtype == expected.dtype and found.shape == expected.shape
        np.testing.assert_array_equal(found, expected)


def test_cache_is_invalidated_when_a_file_changes(tmp_path):
    data = write_dataset(tmp_path / "data")
    cache = tmp_path / "cache"
    before = data_module.load_datasets(data, cache_dir=cache)
    lines = (data / "train.csv").read_text().splitlines()
    first_row = lines[1].split(",")
    first_row[0] = str((int(first_row[0]) + 1) % 10)  # relabel row 1
    first_row[5] = "7"
    (data / "train.csv").write_text("\n".join([lines[0], ",".join(first_row), *lines[2:]]) + "\n")
    after = data_module.load_datasets(data, cache_dir=cache)
    assert after.train_labels[0] == (before.train_labels[0] + 1) % 10
    assert after.train_images[0, 4] == 7
    np.testing.assert_array_equal(after.train_labels[1:], before.train_labels[1:])
    assert after.inputs["train"]["sha256"] == sha256(data / "train.csv")


def test_changed_file_is_validated_again(tmp_path):
    data = write_dataset(tmp_path / "data")
    cache = tmp_path / "cache"
    data_module.load_datasets(data, cache_dir=cache)
    text = (data / "test.csv").read_text().splitlines()
    text[3] = "300" + text[3][text[3].index(",") :]
    (data / "test.csv").write_text("\n".join(text) + "\n")
    with pytest.raises(ValueError, match="line 4, column pixel0: expected a pixel 0..255, found 300"):
        data_module.load_datasets(data, cache_dir=cache)


def test_an_unusable_cache_never_fails_the_load(tmp_path):
    data = write_dataset(tmp_path / "data")
    expected = data_module.load_datasets(data, cache_dir=None)
    not_a_folder = tmp_path / "file"
    not_a_folder.write_text("a file where the cache folder should be")
    loaded = data_module.load_datasets(data, cache_dir=not_a_folder)
    np.testing.assert_array_equal(loaded.train_images, expected.train_images)

    cache = tmp_path / "cache"
    data_module.load_datasets(data, cache_dir=cache)
    entry = cache_entry(cache, "train", sha256(data / "train.csv"))
    entry.write_bytes(b"damaged")
    loaded = data_module.load_datasets(data, cache_dir=cache)
    np.testing.assert_array_equal(loaded.train_labels, expected.train_labels)
    assert entry.stat().st_size > len(b"damaged")  # parsed and stored again


def test_pruning_keeps_the_newest_entries_and_never_touches_other_files(tmp_path):
    cache = tmp_path / "cache"
    cache.mkdir()
    foreign = [cache / f"user-file-{index}.npz" for index in range(3)]
    for path in foreign:
        path.write_bytes(b"not ours")
    entries = [cache_entry(cache, "train", f"{index:064x}") for index in range(MAX_CACHE_ENTRIES + 2)]
    for age, path in enumerate(entries):  # entries[0] is the newest
        path.write_bytes(b"entry")
        os.utime(path, (1_000_000 - age, 1_000_000 - age))
    prune_cache(cache)
    assert all(path.exists() for path in foreign)
    assert [path.exists() for path in entries] == [True] * MAX_CACHE_ENTRIES + [False, False]


def test_cache_off_writes_no_cache_file(tmp_path, monkeypatch):
    data = write_dataset(tmp_path / "data")
    home, xdg = tmp_path / "home", tmp_path / "xdg"
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("XDG_CACHE_HOME", str(xdg))
    monkeypatch.setenv(CACHE_ENV, "off")
    expected = data_module.load_datasets(data, cache_dir=None)
    loaded = data_module.load_datasets(data)
    np.testing.assert_array_equal(loaded.train_images, expected.train_images)
    assert not home.exists() and not xdg.exists()
    assert sorted(path.name for path in tmp_path.rglob("*") if path.is_file()) == ["test.csv", "train.csv"]


def test_xdg_cache_home_holds_the_cache(tmp_path, monkeypatch):
    data = write_dataset(tmp_path / "data")
    home, xdg = tmp_path / "home", tmp_path / "xdg"
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("XDG_CACHE_HOME", str(xdg))
    monkeypatch.delenv(CACHE_ENV)
    data_module.load_datasets(data)
    cache = xdg / "digit-recognizer"
    for kind, name in (("train", "train.csv"), ("test", "test.csv")):
        assert cache_entry(cache, kind, sha256(data / name)).is_file()
    assert not home.exists()
    # Without XDG_CACHE_HOME it is the user's ~/.cache.
    monkeypatch.delenv("XDG_CACHE_HOME")
    data_module.load_datasets(data)
    assert cache_entry(home / ".cache" / "digit-recognizer", "train", sha256(data / "train.csv")).is_file()
