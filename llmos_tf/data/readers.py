"""Read labelled text tables (csv, tsv, jsonl, parquet) into one pandas shape.

Every reader returns the same three columns, ``text``, ``label`` and ``line``,
so the rest of the system never cares which format a user had. ``line`` is the
1-based line of each example in its source file (for parquet: the 1-based
row), which is what lets every later error -- an empty text, an unseen label
-- point at the exact place in the user's file.

Bad input never escapes as a pandas or pyarrow traceback: each problem is one
:class:`~llmos_tf.errors.DataError` that names the file, the line and what was
expected.

Example::

    >>> df = read_labelled_table("data/sample/sentiment_train.csv")   # doctest: +SKIP
    >>> list(df.columns)                                              # doctest: +SKIP
    ['text', 'label', 'line']
"""
from __future__ import annotations

import csv
import io
import json
import math
import os
import re
import shlex
from pathlib import Path
from typing import Any, Sequence

import pandas as pd

from llmos_tf.errors import DataError, MissingColumnError

TEXT_COLUMN_CANDIDATES = ("text", "sentence")
LABEL_COLUMN_CANDIDATES = ("label", "category")

FORMATS_BY_EXTENSION = {
    ".csv": "csv",
    ".tsv": "tsv",
    ".jsonl": "jsonl",
    ".json": "jsonl",
    ".parquet": "parquet",
    ".pq": "parquet",
}
FORMATS = ("csv", "tsv", "jsonl", "parquet")
OUTPUT_COLUMNS = ["text", "label", "line"]

_UTF8_BOM = b"\xef\xbb\xbf"
_PANDAS_FIELDS = re.compile(r"Expected (\d+) fields in line (\d+), saw (\d+)")


# -- files and bytes ---------------------------------------------------------
def detect_format(path: str | os.PathLike) -> str:
    """``"csv"``, ``"tsv"``, ``"jsonl"`` or ``"parquet"`` from the file extension."""
    suffix = Path(path).suffix.lower()
    try:
        return FORMATS_BY_EXTENSION[suffix]
    except KeyError:
        known = ", ".join(FORMATS_BY_EXTENSION)
        shown = f"extension {suffix!r}" if suffix else "no extension"
        raise DataError(
            f"{path}: cannot tell the data format from {shown}; supported extensions are {known} "
            "(or name the format explicitly)"
        ) from None


def check_data_file(path: str | os.PathLike) -> Path:
    """The path as a :class:`Path` if it is a non-empty regular file, else :class:`DataError`."""
    p = Path(path)
    if not p.exists():
        raise DataError(f"{path}: file not found")
    if p.is_dir():
        raise DataError(f"{path}: is a directory, expected a data file")
    if not p.is_file():
        raise DataError(f"{path}: not a regular file")
    try:
        size = p.stat().st_size
    except OSError as exc:
        raise DataError(f"{path}: cannot read the file ({exc.strerror or exc})") from None
    if size == 0:
        raise DataError(f"{path}: empty file (0 bytes)")
    return p


def decode_utf8(data: bytes, path: str | os.PathLike) -> str:
    """Decode strictly as UTF-8 (a leading BOM is dropped); name the first bad byte's line and column."""
    offset = len(_UTF8_BOM) if data.startswith(_UTF8_BOM) else 0
    try:
        return data[offset:].decode("utf-8")
    except UnicodeDecodeError as exc:
        start = exc.start + offset
        line = data.count(b"\n", 0, start) + 1
        column = start - (data.rfind(b"\n", 0, start) + 1) + 1
        raise DataError(
            f"{path}, line {line}: not valid UTF-8 (byte 0x{data[start]:02x} at column {column}); "
            "save the file as UTF-8"
        ) from None


def read_utf8_text(path: str | os.PathLike) -> str:
    """The whole file as text, after :func:`check_data_file` and strict UTF-8 decoding."""
    p = check_data_file(path)
    try:
        data = p.read_bytes()
    except OSError as exc:
        raise DataError(f"{path}: cannot read the file ({exc.strerror or exc})") from None
    return decode_utf8(data, path)


# -- values -----------------------------------------------------------------
def _is_missing(value: Any) -> bool:
    if value is None:
        return True
    if isinstance(value, float) and math.isnan(value):
        return True
    try:
        return bool(pd.isna(value)) if not isinstance(value, (str, list, tuple, dict)) else False
    except (TypeError, ValueError):
        return False


def _as_text(value: Any) -> str | None:
    """A cell as a string; ``None`` when missing or blank."""
    if _is_missing(value):
        return None
    text = value if isinstance(value, str) else str(value)
    return text if text.strip() else None


def _as_label(value: Any) -> str | None:
    """A label cell as a string: ``1`` and ``1.0`` (an int column widened by pandas) both give ``"1"``."""
    if _is_missing(value):
        return None
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if hasattr(value, "item") and not isinstance(value, str):  # numpy scalars
        return _as_label(value.item())
    text = value if isinstance(value, str) else str(value)
    text = text.strip()
    return text or None


# -- column detection ---------------------------------------------------------
def _find_column(
    columns: Sequence[str], explicit: str | None, candidates: Sequence[str]
) -> str | None:
    """Explicit name (exact, then case-insensitive) or the first candidate present."""
    by_lower = {}
    for col in columns:
        by_lower.setdefault(str(col).strip().lower(), col)
    wanted = [explicit] if explicit else list(candidates)
    for name in wanted:
        if name in columns:
            return name
        if name.strip().lower() in by_lower:
            return by_lower[name.strip().lower()]
    return None


def column_hint(what: str, suggestion: str | None) -> str:
    """How ``llmos train`` is told which column holds the texts or labels: ``--set data.text_column=review``."""
    setting = f"data.{what}_column={suggestion or 'NAME'}"
    return f"set it with --set {shlex.quote(setting)}"


def _guess_column(raw: pd.DataFrame, what: str, exclude: Sequence[str]) -> str | None:
    """The column most likely to hold the texts (longest strings) or the labels (fewest distinct values)."""
    columns = [c for c in raw.columns if c not in exclude]
    if not columns:
        return None
    sample = raw.head(1000)
    if what == "text":
        def mean_length(column: str) -> float:
            values = [v for v in sample[column].tolist() if isinstance(v, str)]
            return sum(len(v) for v in values) / len(values) if values else 0.0

        best = max(columns, key=mean_length)
        return best if mean_length(best) > 0 else None

    def distinct(column: str) -> int:
        try:
            return int(sample[column].astype(str).nunique())
        except (TypeError, ValueError):
            return len(sample)

    return min(columns, key=distinct)


def _missing_column_error(path, what: str, explicit: str | None, candidates, raw: pd.DataFrame, exclude: Sequence[str] = ()) -> MissingColumnError:
    """No text (or label) column: name the file, what was looked for, the columns it has and the fix."""
    columns = [str(c) for c in raw.columns]
    looked = [explicit] if explicit else list(candidates)
    looked_for = " or ".join(repr(c) for c in looked)
    have = ", ".join(columns) or "(none)"
    suggestion = _guess_column(raw, what, exclude)
    return MissingColumnError(
        f"{path}: no {what} column: looked for {looked_for}; the file has columns: {have}", column_hint(what, suggestion),
        path=str(path), what=what, columns=columns, suggestion=suggestion,
    )


# -- format readers: each returns (raw frame, 1-based line per row) ------------------
def _delimited_lines(text: str, path, delimiter: str, quoting: int) -> list[int]:
    """Start line of every record, checking each has as many fields as the header."""
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter, quoting=quoting)
    lines: list[int] = []
    expected: int | None = None
    previous_end = 0
    try:
        for record in reader:
            start = previous_end + 1
            previous_end = reader.line_num
            if not record or (len(record) == 1 and not record[0].strip()):
                continue  # blank lines are skipped, as pandas does
            if expected is None:
                expected = len(record)
                continue
            if len(record) != expected:
                raise DataError(f"{path}, line {start}: expected {expected} fields, found {len(record)}")
            lines.append(start)
    except csv.Error as exc:
        raise DataError(f"{path}, line {reader.line_num}: malformed row ({exc})") from None
    return lines


def _drop_stray_carriage_returns(text: str) -> str:
    return text.replace("\r\n", "\n").replace("\r", "")


def _read_delimited(path, text: str, delimiter: str, quoting: int) -> tuple[pd.DataFrame, list[int]]:
    lines = _delimited_lines(text, path, delimiter, quoting)
    try:
        frame = pd.read_csv(
            io.StringIO(text),
            sep=delimiter,
            quoting=quoting,
            dtype=str,
            keep_default_na=False,
            na_values=[],
            index_col=False,
            skip_blank_lines=True,
            engine="c",
        )
    except pd.errors.EmptyDataError:
        raise DataError(f"{path}: empty file (no header and no rows)") from None
    except pd.errors.ParserError as exc:
        match = _PANDAS_FIELDS.search(str(exc))
        if match:
            expected, line, found = match.groups()
            raise DataError(f"{path}, line {line}: expected {expected} fields, found {found}") from None
        raise DataError(f"{path}: cannot parse the file: {str(exc).strip()}") from None
    except (ValueError, csv.Error) as exc:
        raise DataError(f"{path}: cannot parse the file: {exc}") from None
    if len(lines) != len(frame):  # quoting corner cases: fall back to "header + row number"
        lines = list(range(2, len(frame) + 2))
    return frame, lines


def _read_jsonl(path, text: str) -> tuple[pd.DataFrame, list[int]]:
    records: list[dict] = []
    lines: list[int] = []
    for number, raw in enumerate(text.split("\n"), start=1):
        stripped = raw.strip()
        if not stripped:
            continue
        try:
            record = json.loads(stripped)
        except json.JSONDecodeError as exc:
            raise DataError(f"{path}, line {number}: not valid JSON: {exc.msg} (column {exc.colno})") from None
        if not isinstance(record, dict):
            raise DataError(
                f"{path}, line {number}: expected a JSON object like {{\"text\": ..., \"label\": ...}}, "
                f"found {type(record).__name__}"
            )
        records.append(record)
        lines.append(number)
    if not records:
        raise DataError(f"{path}: no examples (only blank lines)")
    columns: dict[str, None] = {}
    for record in records:
        columns.update(dict.fromkeys(record))
    frame = pd.DataFrame.from_records(records, columns=list(columns))
    return frame, lines


def _read_parquet(path) -> tuple[pd.DataFrame, list[int]]:
    try:
        frame = pd.read_parquet(path)
    except Exception as exc:  # pyarrow raises many types; none may escape
        message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise DataError(f"{path}: not a readable parquet file ({message})") from None
    return frame, list(range(1, len(frame) + 1))


def _read_raw(path, fmt: str) -> tuple[pd.DataFrame, list[int]]:
    if fmt == "parquet":
        check_data_file(path)
        return _read_parquet(path)
    text = read_utf8_text(path)
    if not text.strip():
        raise DataError(f"{path}: empty file (only whitespace)")
    if fmt == "csv":
        return _read_delimited(path, text, ",", csv.QUOTE_MINIMAL)
    if fmt == "tsv":
        # Unquoted TSV has no way to hold a line break in a field, so only "\n" ends a line.
        # GLUE's SST-2 train.tsv has a stray "\r" before every tab; the csv module would take it
        # for a line end and report a one-field row.
        return _read_delimited(path, _drop_stray_carriage_returns(text), "\t", csv.QUOTE_NONE)
    return _read_jsonl(path, text)


# -- public API --------------------------------------------------------------
def read_labelled_table(
    path: str | os.PathLike,
    text_column: str | None = None,
    label_column: str | None = None,
    *,
    require_labels: bool = True,
    format: str | None = None,
) -> pd.DataFrame:
    """Read a labelled table into columns ``text``, ``label`` (both str) and ``line`` (int).

    Columns are found by the explicit names if given, else by the first of
    :data:`TEXT_COLUMN_CANDIDATES` / :data:`LABEL_COLUMN_CANDIDATES` present
    (case-insensitive). With ``require_labels=False`` the label column may be
    absent, and ``label`` is then ``None`` for every row.
    """
    fmt = (format or detect_format(path)).lower()
    if fmt not in FORMATS:
        raise DataError(f"{path}: unknown data format {format!r}; supported formats are {', '.join(FORMATS)}")
    raw, lines = _read_raw(path, fmt)
    unit = "row" if fmt == "parquet" else "line"
    columns = [str(c) for c in raw.columns]
    raw.columns = columns

    text_col = _find_column(columns, text_column, TEXT_COLUMN_CANDIDATES)
    label_col = _find_column(columns, label_column, LABEL_COLUMN_CANDIDATES)
    if text_col is None:
        raise _missing_column_error(path, "text", text_column, TEXT_COLUMN_CANDIDATES, raw, exclude=[label_col] if label_col else [])
    if label_col is None and (require_labels or label_column):
        raise _missing_column_error(path, "label", label_column, LABEL_COLUMN_CANDIDATES, raw, exclude=[text_col])
    if len(raw) == 0:
        raise DataError(f"{path}: no examples (only a header)")

    texts = _checked_values(raw[text_col].tolist(), lines, _as_text, path, unit, "text", text_col, required=True)
    if label_col is None:
        labels: list[str | None] = [None] * len(texts)
    else:
        labels = _checked_values(
            raw[label_col].tolist(), lines, _as_label, path, unit, "label", label_col, required=require_labels
        )
    frame = pd.DataFrame(
        {"text": pd.Series(texts, dtype=object), "label": pd.Series(labels, dtype=object), "line": lines},
        columns=OUTPUT_COLUMNS,
    )
    frame["line"] = frame["line"].astype("int64")
    frame.attrs.update(
        {"path": str(path), "text_column": text_col, "label_column": label_col, "format": fmt}
    )
    return frame


def _checked_values(values, lines, convert, path, unit: str, what: str, column: str, *, required: bool) -> list:
    out = []
    for value, line in zip(values, lines):
        converted = convert(value)
        if converted is None and required:
            raise DataError(f"{path}, {unit} {line}: empty {what} in column {column!r}")
        out.append(converted)
    return out


def read_texts(path: str | os.PathLike, text_column: str | None = None) -> pd.DataFrame:
    """Texts to predict on: like :func:`read_labelled_table` but labels are optional."""
    return read_labelled_table(path, text_column, require_labels=False)
