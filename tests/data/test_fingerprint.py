"""Data fingerprints follow file content, roles and params -- not paths."""
from __future__ import annotations

import hashlib
import shutil

import pytest

from llmos_tf.data.fingerprint import data_fingerprint, file_sha256
from llmos_tf.errors import DataError


@pytest.fixture
def train_file(tmp_path):
    path = tmp_path / "train.csv"
    path.write_text("text,label\ngood,pos\nbad,neg\n", encoding="utf-8")
    return path


def test_file_sha256(train_file):
    assert file_sha256(train_file) == hashlib.sha256(train_file.read_bytes()).hexdigest()


def test_file_sha256_missing(tmp_path):
    with pytest.raises(DataError, match="missing.csv: file not found"):
        file_sha256(tmp_path / "missing.csv")


def test_deterministic_and_prefixed(train_file):
    a = data_fingerprint({"train": str(train_file), "validation": None}, {"seed": 0, "fraction": 0.1})
    b = data_fingerprint({"validation": None, "train": train_file}, {"fraction": 0.1, "seed": 0})
    assert a == b and a.startswith("sha256:") and len(a) == len("sha256:") + 64


def test_copy_elsewhere_gives_same_fingerprint(train_file, tmp_path):
    copy = tmp_path / "elsewhere" / "renamed.csv"
    copy.parent.mkdir()
    shutil.copy(train_file, copy)
    assert data_fingerprint({"train": train_file}) == data_fingerprint({"train": copy})


def test_content_change_changes_fingerprint(train_file):
    before = data_fingerprint({"train": train_file})
    train_file.write_text("text,label\ngood,pos\nbad,pos\n", encoding="utf-8")
    assert data_fingerprint({"train": train_file}) != before


def test_params_roles_and_missing_files_matter(train_file):
    base = data_fingerprint({"train": train_file}, {"seed": 0})
    assert data_fingerprint({"train": train_file}, {"seed": 1}) != base
    assert data_fingerprint({"train": train_file}) != base
    assert data_fingerprint({"validation": train_file}, {"seed": 0}) != base
    assert data_fingerprint({"train": train_file, "test": None}, {"seed": 0}) != base


def test_params_with_non_json_values(train_file, tmp_path):
    assert data_fingerprint({"train": train_file}, {"out": tmp_path}).startswith("sha256:")
