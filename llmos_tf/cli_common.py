"""What the ``llmos`` command modules share: result tables, warnings, reading data files for a command.

Below :mod:`llmos_tf.cli` and :mod:`llmos_tf.cli_commands` (they import it, it imports neither), and
free of TensorFlow, so a wrong column or file answers before TensorFlow starts.
"""
from __future__ import annotations

import pathlib
import shlex
import sys
from typing import Any, Sequence

from llmos_tf.model_ref import ModelRef

# tf.distribute strategies `llmos train --strategy` accepts (llmos_tf.training.distribute.STRATEGIES,
# repeated here so a wrong name is refused before TensorFlow is imported)
STRATEGIES = ("auto", "default", "one_device", "mirrored", "multi_worker", "tpu")


def table(rows: Sequence[tuple[str, Any]], title: str | None = None) -> str:
    width = max((len(k) for k, _ in rows), default=0)
    lines = [title, "-" * len(title)] if title else []
    lines += [f"{k.ljust(width)}  {v}" for k, v in rows]
    return "\n".join(lines)


def fmt(x: Any) -> str:
    return f"{x:.4f}" if isinstance(x, float) else str(x)


def warn(message: str) -> None:
    print(f"warning: {message}", file=sys.stderr)


# file extensions read as CoNLL (llmos_tf.tasks.tagging.CONLL_SUFFIXES, which imports TensorFlow)
CONLL_SUFFIXES = (".conll", ".conllu", ".iob", ".iob2", ".bio", ".ner")


def is_conll(path: str | pathlib.Path) -> bool:
    return pathlib.Path(path).suffix.lower() in CONLL_SUFFIXES


def read_table(path: str, text_column: str | None, label_column: str | None, *, labelled: bool):
    """A labelled (or unlabelled) table; a missing column names the flag that fixes it."""
    from llmos_tf.data.readers import read_labelled_table, read_texts
    from llmos_tf.errors import MissingColumnError

    try:
        if labelled:
            return read_labelled_table(path, text_column, label_column)
        return read_texts(path, text_column)
    except MissingColumnError as err:
        raise err.with_hint(f"pass --{err.what}_column {shlex.quote(err.suggestion or 'NAME')}") from None


def read_sentences(path: str) -> list[str]:
    """Sentences for a tagger: a CoNLL file (tokens joined by spaces) or a text file, one sentence per line."""
    from llmos_tf.data.readers import read_utf8_text
    from llmos_tf.errors import DataError

    if is_conll(path):
        from llmos_tf.data.conll import read_conll

        return [" ".join(tokens) for tokens in read_conll(path)["tokens"]]
    sentences = [line.strip() for line in read_utf8_text(path).splitlines() if line.strip()]
    if not sentences:
        raise DataError(f"{path}: no sentences (expected one sentence per line)")
    return sentences


def check_column_flags(args, ref: ModelRef) -> None:
    from llmos_tf.errors import ConfigError

    given = [f"--{k}" for k in ("text_column", "label_column") if getattr(args, k, None)]
    if not given:
        return
    if ref.task == "ner":
        raise ConfigError(f"{' and '.join(given)}: {ref.path} is a tagger; it reads CoNLL files (token and tag per line), which have no columns")
    if ref.task == "multitask" and ref.kind == "run":
        raise ConfigError(f"{' and '.join(given)}: not supported for a multitask run ({ref.path}); name the columns text and label, "
                          "or evaluate its export (saved_models/<name>/<version> --head HEAD)")
