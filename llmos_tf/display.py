"""How results look: tables that fit the terminal, and inline HTML for notebooks.

:func:`fit_table` prints prediction frames (``llmos predict``) as left-aligned
columns that fit the terminal: a text longer than its share of the width is
cut with an ellipsis instead of pushing the row off the screen (pandas would
right-align it behind a wall of spaces). ``--json`` keeps the full texts.

:func:`entities_html` takes what a tagger run predicts (``Run.predict`` on an NER
run: ``tokens`` and ``entities`` with token offsets) and returns an object that
Jupyter renders as marked-up sentences, one colour per entity type, in the
style of spaCy's displaCy.

Example::

    print(fit_table(run.predict(["a wonderful film"]), width=60))
    from llmos_tf import entities_html
    entities_html(ner_run.predict(["Anna Berg joined Northwind Bank in Oslo"]))
"""
from __future__ import annotations

import html
import shutil
import sys
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import pandas as pd

from llmos_tf.errors import DataError

PALETTE = ("#aa9cfc", "#feca74", "#7aecec", "#bfeeb7", "#ff9561", "#e4e7d2", "#c887fb", "#9cc9cc")
KNOWN_COLOURS = {"PER": "#aa9cfc", "ORG": "#7aecec", "LOC": "#feca74", "MISC": "#bfeeb7"}

# columns that hold free text: they share the width the others leave, and are cut to fit
FLEXIBLE_COLUMNS = ("text", "tags", "tokens", "entities")
MIN_FLEXIBLE_WIDTH = 12
GAP = "  "


def terminal_width(default: int = 120) -> int:
    """Columns of the terminal (``COLUMNS`` wins; ``default`` when stdout is not a terminal)."""
    return shutil.get_terminal_size((default, 24)).columns


def _ellipsis() -> str:
    encoding = getattr(sys.stdout, "encoding", None) or "utf-8"
    try:
        "\u2026".encode(encoding)
    except (UnicodeEncodeError, LookupError):
        return "..."
    return "\u2026"


def truncate(text: str, width: int) -> str:
    """One line of at most ``width`` characters: line breaks and tabs become spaces, the cut ends in an ellipsis."""
    text = " ".join(str(text).split())
    if len(text) <= width:
        return text
    mark = _ellipsis()
    return text[: max(width - len(mark), 0)] + mark if width > len(mark) else text[:width]


def _cell(value: Any, float_format: str) -> str:
    if isinstance(value, float):
        return float_format.format(value)
    if isinstance(value, (list, tuple)):
        return " ".join(str(v) for v in value)
    return str(value)


def fit_table(frame: pd.DataFrame, width: int | None = None, *, float_format: str = "{:.3f}") -> str:
    """``frame`` as aligned columns no wider than ``width`` (default: the terminal's).

    Numbers are right-aligned, everything else left-aligned. The free-text columns
    (:data:`FLEXIBLE_COLUMNS`) share what the other columns leave; a value longer than
    its column is cut with an ellipsis. Each column keeps at least a few characters, so
    on a very narrow terminal a row may still wrap.
    """
    width = terminal_width() if width is None else int(width)
    columns = [str(c) for c in frame.columns]
    cells = {c: [_cell(v, float_format) for v in frame[col].tolist()] for c, col in zip(columns, frame.columns)}
    cells = {c: [" ".join(v.split()) for v in values] for c, values in cells.items()}
    natural = {c: max([len(c)] + [len(v) for v in cells[c]]) for c in columns}
    numeric = {c: pd.api.types.is_numeric_dtype(frame[col]) and not pd.api.types.is_bool_dtype(frame[col]) for c, col in zip(columns, frame.columns)}
    flexible = [c for c in columns if c in FLEXIBLE_COLUMNS] or [c for c in columns if not numeric[c]]
    widths = dict(natural)
    room = width - len(GAP) * (len(columns) - 1) - sum(natural[c] for c in columns if c not in flexible)
    if sum(natural[c] for c in flexible) > room:
        # water-filling: narrow columns keep their width, the rest share what is left equally
        left = room
        for i, c in enumerate(sorted(flexible, key=lambda c: natural[c])):
            share = left // (len(flexible) - i)
            widths[c] = min(natural[c], max(share, MIN_FLEXIBLE_WIDTH))
            left -= widths[c]

    def row(values: Sequence[str]) -> str:
        parts = []
        for c, v in zip(columns, values):
            v = truncate(v, widths[c])
            parts.append(v.rjust(widths[c]) if numeric[c] else v.ljust(widths[c]))
        return GAP.join(parts).rstrip()

    lines = [row(columns)]
    lines += [row([cells[c][i] for c in columns]) for i in range(len(frame))]
    return "\n".join(lines)


@dataclass
class EntityHTML:
    """Marked-up sentences; ``_repr_html_`` is what Jupyter shows, ``html`` the same string."""

    html: str

    def _repr_html_(self) -> str:
        return self.html

    def __str__(self) -> str:
        return self.html


def _colour(kind: str, assigned: dict[str, str]) -> str:
    if kind not in assigned:
        assigned[kind] = KNOWN_COLOURS.get(kind, PALETTE[len(assigned) % len(PALETTE)])
    return assigned[kind]


def sentence_html(tokens: Sequence[str], entities: Sequence[Mapping[str, Any]], colours: dict[str, str] | None = None) -> str:
    """One sentence: tokens joined by spaces, each entity span in a ``<mark>`` labelled with its type."""
    colours = {} if colours is None else colours
    starts = {int(e["start"]): e for e in entities}
    parts, i = [], 0
    while i < len(tokens):
        entity = starts.get(i)
        if entity is not None and int(entity["end"]) > i:
            end = min(int(entity["end"]), len(tokens))
            kind = str(entity["type"])
            text = html.escape(" ".join(tokens[i:end]))
            parts.append(
                f'<mark class="entity" data-type="{html.escape(kind)}" style="background:{_colour(kind, colours)};'
                f'padding:0.1em 0.35em;border-radius:0.3em;line-height:2">{text}'
                f'<span style="font-size:0.7em;font-weight:bold;margin-left:0.4em">{html.escape(kind)}</span></mark>'
            )
            i = end
        else:
            parts.append(html.escape(tokens[i]))
            i += 1
    return " ".join(parts)


def entities_html(predictions: pd.DataFrame) -> EntityHTML:
    """All rows of a tagger's prediction frame (columns ``tokens`` and ``entities``) as HTML."""
    missing = [c for c in ("tokens", "entities") if c not in getattr(predictions, "columns", [])]
    if missing:
        raise DataError(f"entities_html: expected a tagger's predictions with columns tokens and entities; missing {missing}")
    colours: dict[str, str] = {}
    lines = [f'<div class="llmos-entities" style="margin:0.4em 0">{sentence_html(list(t), list(e), colours)}</div>'
             for t, e in zip(predictions["tokens"], predictions["entities"])]
    return EntityHTML("\n".join(lines))
