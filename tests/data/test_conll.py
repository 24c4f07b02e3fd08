"""CoNLL reading: 2- and 4-column files, DOCSTART, trailing spaces, clear errors."""
from __future__ import annotations

import pytest

from llmos_tf.data.conll import read_conll, tag_label_map
from llmos_tf.errors import DataError

TWO_COLUMNS = """-DOCSTART- O

EU B-ORG 
rejects O
German B-MISC
call O
. O

Peter B-PER
Blackburn I-PER

"""

FOUR_COLUMNS = """-DOCSTART- -X- -X- O

EU NNP B-NP B-ORG
rejects VBZ B-VP O
German JJ B-NP B-MISC

BRUSSELS NNP B-NP B-LOC
1996-08-22 CD I-NP O
"""


def write(path, text):
    path.write_bytes(text.encode("utf-8"))
    return path


def test_two_column_file(tmp_path):
    path = write(tmp_path / "train.conll", TWO_COLUMNS)
    df = read_conll(path)
    assert list(df.columns) == ["tokens", "tags", "line"]
    assert df["tokens"].tolist() == [["EU", "rejects", "German", "call", "."], ["Peter", "Blackburn"]]
    assert df["tags"].tolist() == [["B-ORG", "O", "B-MISC", "O", "O"], ["B-PER", "I-PER"]]
    assert df["line"].tolist() == [3, 9]
    assert df.attrs == {"path": str(path), "format": "conll"}


def test_four_column_file_tab_or_space(tmp_path):
    path = write(tmp_path / "eng.train", FOUR_COLUMNS.replace(" ", "\t"))
    df = read_conll(path)
    assert df["tags"].tolist() == [["B-ORG", "O", "B-MISC"], ["B-LOC", "O"]]
    assert df["line"].tolist() == [3, 7]
    pos = read_conll(path, tag_column=1)
    assert pos["tags"][0] == ["NNP", "VBZ", "JJ"]


def test_crlf_and_multiple_blank_lines(tmp_path):
    path = write(tmp_path / "w.conll", "a O\r\n\r\n\r\nb B-LOC\r\n")
    df = read_conll(path)
    assert df["tokens"].tolist() == [["a"], ["b"]] and df["line"].tolist() == [1, 4]


def test_any_tag_scheme_is_accepted(tmp_path):
    df = read_conll(write(tmp_path / "b.conll", "New S-LOC\nYork E-LOC\n"))
    assert df["tags"][0] == ["S-LOC", "E-LOC"]


def test_one_field_line(tmp_path):
    path = write(tmp_path / "bad.conll", "EU B-ORG\nrejects\n")
    with pytest.raises(DataError) as info:
        read_conll(path)
    assert str(info.value).startswith(f"{path}, line 2: expected 'token tag'")


def test_tag_column_out_of_range(tmp_path):
    path = write(tmp_path / "bad.conll", "EU B-ORG\n")
    with pytest.raises(DataError, match=r"bad\.conll, line 1: no tag in field 3"):
        read_conll(path, tag_column=3)


def test_missing_and_empty(tmp_path):
    with pytest.raises(DataError, match="file not found"):
        read_conll(tmp_path / "none.conll")
    with pytest.raises(DataError, match="empty"):
        read_conll(write(tmp_path / "empty.conll", ""))


def test_no_sentences(tmp_path):
    path = write(tmp_path / "doc.conll", "-DOCSTART- O\n\n\n")
    with pytest.raises(DataError, match=r"doc\.conll: no sentences"):
        read_conll(path)


def test_invalid_utf8(tmp_path):
    path = tmp_path / "latin.conll"
    path.write_bytes(b"EU B-ORG\n\nZ\xfcrich B-LOC\n")
    with pytest.raises(DataError) as info:
        read_conll(path)
    assert str(info.value) == f"{path}, line 3: not valid UTF-8 (byte 0xfc at column 2); save the file as UTF-8"


def test_tag_label_map_puts_o_first(tmp_path):
    df = read_conll(write(tmp_path / "t.conll", TWO_COLUMNS))
    labels = tag_label_map(df)
    assert labels.names == ["O", "B-MISC", "B-ORG", "B-PER", "I-PER"]
    assert labels.encode(df["tags"][1]).tolist() == [3, 4]
