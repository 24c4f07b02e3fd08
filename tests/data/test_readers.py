"""Readers: every format gives text/label/line, and every bad input one clear DataError."""
from __future__ import annotations

import json
import pathlib

import pandas as pd
import pytest

from llmos_tf.data.readers import detect_format, read_labelled_table, read_texts
from llmos_tf.errors import DataError


def write(path: pathlib.Path, text: str) -> pathlib.Path:
    path.write_bytes(text.encode("utf-8"))
    return path


def error_of(path, **kwargs) -> str:
    with pytest.raises(DataError) as info:
        read_labelled_table(path, **kwargs)
    assert info.value.__cause__ is None or isinstance(info.value.__cause__, DataError)
    return str(info.value)


# -- format detection -------------------------------------------------------------
@pytest.mark.parametrize(
    "name, fmt",
    [("a.csv", "csv"), ("a.TSV", "tsv"), ("a.jsonl", "jsonl"), ("a.json", "jsonl"), ("a.parquet", "parquet"), ("a.pq", "parquet")],
)
def test_detect_format(name, fmt):
    assert detect_format(name) == fmt


def test_detect_format_unknown_lists_supported():
    with pytest.raises(DataError, match=r"data\.xlsx.*\.csv.*\.tsv.*\.jsonl.*\.parquet"):
        detect_format("data.xlsx")


# -- each format -------------------------------------------------------------------
def test_csv_banking_style(tmp_path):
    path = write(tmp_path / "bank.csv", 'text,category\n"Hi, where is my card?",card_arrival\nNA,balance\nnull,balance\n')
    df = read_labelled_table(path)
    assert list(df.columns) == ["text", "label", "line"]
    assert df["text"].tolist() == ["Hi, where is my card?", "NA", "null"]
    assert df["label"].tolist() == ["card_arrival", "balance", "balance"]
    assert df["line"].tolist() == [2, 3, 4]
    assert df.attrs == {"path": str(path), "text_column": "text", "label_column": "category", "format": "csv"}


def test_csv_multiline_quoted_field_keeps_source_lines(tmp_path):
    path = write(tmp_path / "m.csv", 'text,label\n"two\nlines",a\n\nlast,b\n')
    df = read_labelled_table(path)
    assert df["text"].tolist() == ["two\nlines", "last"]
    assert df["line"].tolist() == [2, 5]


def test_tsv_sst2_style_with_quotes(tmp_path):
    path = write(tmp_path / "sst.tsv", 'sentence\tlabel\nit \'s a "charming" film \t1\n" hide new secretions\t0\n')
    df = read_labelled_table(path)
    assert df["text"].tolist() == ['it \'s a "charming" film ', '" hide new secretions']
    assert df["label"].tolist() == ["1", "0"]
    assert df["line"].tolist() == [2, 3]
    assert df.attrs["text_column"] == "sentence" and df.attrs["format"] == "tsv"


def test_jsonl_numbers_become_strings(tmp_path):
    lines = [json.dumps({"text": "good", "label": 1}), "", json.dumps({"text": "bad", "label": 0})]
    path = write(tmp_path / "d.jsonl", "\n".join(lines) + "\n")
    df = read_labelled_table(path)
    assert df["label"].tolist() == ["1", "0"]
    assert df["line"].tolist() == [1, 3]


def test_parquet_int_labels_with_float_widening(tmp_path):
    path = tmp_path / "d.parquet"
    pd.DataFrame({"Text": ["a", "b", "c"], "label": [1.0, 2.0, 10.0]}).to_parquet(path)
    df = read_labelled_table(path)
    assert df["label"].tolist() == ["1", "2", "10"]
    assert df["line"].tolist() == [1, 2, 3]
    assert df.attrs["text_column"] == "Text"


def test_explicit_columns_and_format_override(tmp_path):
    path = write(tmp_path / "d.txt", "body,y,text\nhello,x,ignored\n")
    df = read_labelled_table(path, "body", "y", format="csv")
    assert df["text"].tolist() == ["hello"] and df["label"].tolist() == ["x"]


def test_case_insensitive_column_detection(tmp_path):
    path = write(tmp_path / "d.csv", "Sentence,Category\nhi,a\n")
    df = read_labelled_table(path)
    assert df.attrs["text_column"] == "Sentence" and df.attrs["label_column"] == "Category"


def test_read_texts_without_label_column(tmp_path):
    path = write(tmp_path / "p.csv", "text\nhello\nworld\n")
    df = read_texts(path)
    assert df["text"].tolist() == ["hello", "world"]
    assert df["label"].tolist() == [None, None]
    assert df.attrs["label_column"] is None


def test_read_texts_with_label_column_keeps_labels(tmp_path):
    path = write(tmp_path / "p.csv", "text,label\nhello,a\n")
    assert read_texts(path)["label"].tolist() == ["a"]


def test_utf8_bom_is_accepted(tmp_path):
    path = tmp_path / "bom.csv"
    path.write_bytes(b"\xef\xbb\xbftext,label\nhi,a\n")
    assert read_labelled_table(path).attrs["text_column"] == "text"


# -- bad input -------------------------------------------------------------------------
def test_missing_file(tmp_path):
    msg = error_of(tmp_path / "nope.csv")
    assert "nope.csv" in msg and "file not found" in msg


def test_directory(tmp_path):
    folder = tmp_path / "dir.csv"
    folder.mkdir()
    assert "directory" in error_of(folder)


def test_empty_file(tmp_path):
    msg = error_of(write(tmp_path / "empty.csv", ""))
    assert "empty.csv" in msg and "empty" in msg


def test_whitespace_only_file(tmp_path):
    assert "empty" in error_of(write(tmp_path / "blank.csv", "\n\n  \n"))


@pytest.mark.parametrize("name, text", [("h.csv", "text,label\n"), ("h.tsv", "sentence\tlabel\n")])
def test_header_only(tmp_path, name, text):
    msg = error_of(write(tmp_path / name, text))
    assert name in msg and "no examples (only a header)" in msg


def test_missing_text_column_lists_columns(tmp_path):
    msg = error_of(write(tmp_path / "cols.csv", "a,b\n1,2\n"))
    assert msg == (f"{tmp_path / 'cols.csv'}: no text column: looked for 'text' or 'sentence'; the file has columns: a, b; "
                   "set it with --set data.text_column=a")


def test_missing_label_column(tmp_path):
    msg = error_of(write(tmp_path / "cols.csv", "text,b\nhi,2\n"))
    assert "no label column" in msg and "'label' or 'category'" in msg and "text, b" in msg


def test_missing_explicit_column(tmp_path):
    msg = error_of(write(tmp_path / "cols.csv", "text,label\nhi,2\n"), text_column="body")
    assert "looked for 'body'" in msg and "text, label" in msg


@pytest.mark.parametrize("cell", ["", "   ", '""'])
def test_empty_text_names_line_and_column(tmp_path, cell):
    path = write(tmp_path / "e.csv", f"sentence,label\nok,a\nok,b\n{cell},a\n")
    msg = error_of(path)
    assert msg == f"{path}, line 4: empty text in column 'sentence'"


def test_empty_label_when_required(tmp_path):
    path = write(tmp_path / "e.tsv", "sentence\tlabel\nok\t1\nfine\t\n")
    assert error_of(path) == f"{path}, line 3: empty label in column 'label'"


def test_empty_label_allowed_for_texts(tmp_path):
    path = write(tmp_path / "e.csv", "text,label\nok,\n")
    assert read_texts(path)["label"].tolist() == [None]


def test_jsonl_missing_text_value(tmp_path):
    path = write(tmp_path / "e.jsonl", '{"text": "a", "label": "x"}\n{"text": null, "label": "y"}\n')
    assert error_of(path) == f"{path}, line 2: empty text in column 'text'"


def test_parquet_nan_text_says_row(tmp_path):
    path = tmp_path / "e.parquet"
    pd.DataFrame({"text": ["a", None], "label": ["x", "y"]}).to_parquet(path)
    assert error_of(path) == f"{path}, row 2: empty text in column 'text'"


def test_invalid_utf8_names_line_byte_and_column(tmp_path):
    path = tmp_path / "latin.csv"
    data = b"text,label\n" + b"ok,a\n" * 10 + b"caf\xff,b\n"
    path.write_bytes(data)
    msg = error_of(path)
    assert msg == f"{path}, line 12: not valid UTF-8 (byte 0xff at column 4); save the file as UTF-8"


def test_too_many_fields(tmp_path):
    path = write(tmp_path / "f.csv", "text,label\na,1\nb,2\nc,3,4\n")
    msg = error_of(path)
    assert msg == f"{path}, line 4: expected 2 fields, found 3"


def test_too_few_fields(tmp_path):
    path = write(tmp_path / "f.tsv", "sentence\tlabel\na\t1\njust text\n")
    assert error_of(path) == f"{path}, line 3: expected 2 fields, found 1"


def test_bad_json_line(tmp_path):
    path = write(tmp_path / "b.jsonl", '{"text": "a", "label": "x"}\n{"text": "b", "label": \n')
    msg = error_of(path)
    assert msg.startswith(f"{path}, line 2: not valid JSON")


def test_json_line_not_an_object(tmp_path):
    path = write(tmp_path / "b.jsonl", '{"text": "a", "label": "x"}\n["b", "y"]\n')
    assert f"{path}, line 2: expected a JSON object" in error_of(path)


def test_corrupt_parquet(tmp_path):
    path = write(tmp_path / "bad.parquet", "this is not parquet")
    msg = error_of(path)
    assert "bad.parquet" in msg and "parquet" in msg


def test_unknown_format_name(tmp_path):
    path = write(tmp_path / "d.csv", "text,label\na,b\n")
    assert "unknown data format 'xml'" in error_of(path, format="xml")


def test_tsv_with_stray_carriage_returns_reads_like_sst2(tmp_path):
    """GLUE's SST-2 train.tsv ends every sentence with a stray CR before the tab."""
    path = tmp_path / "sst2.tsv"
    path.write_bytes(b"sentence\tlabel\nhide new secretions \r\t0\ncontains no wit , only labored gags \r\t0\nit 's \"good\" \r\t1\n")
    frame = read_labelled_table(path)
    assert frame["label"].tolist() == ["0", "0", "1"]
    assert frame["line"].tolist() == [2, 3, 4]
    assert "\r" not in "".join(frame["text"])
    assert frame["text"][2] == 'it \'s "good" '
