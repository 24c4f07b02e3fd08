"""What the ``llmos`` command modules share: parser pieces, result tables, warnings, reading data files for a command.

Below :mod:`llmos_tf.cli` and :mod:`llmos_tf.cli_commands` (they import it, it imports neither), and
free of TensorFlow, so a wrong column or file answers before TensorFlow starts.
"""
from __future__ import annotations

import argparse
import pathlib
import shlex
import sys
import textwrap
from typing import Any, Sequence

from llmos_tf.model_ref import ModelRef
from llmos_tf.task_kinds import task_kind  # a task's facts without TensorFlow: these checks run before it is imported

# tf.distribute strategies `llmos train --strategy` accepts (llmos_tf.training.distribute.STRATEGIES,
# repeated here so a wrong name is refused before TensorFlow is imported)
STRATEGIES = ("auto", "default", "one_device", "mirrored", "multi_worker", "tpu")


def add_command(sub, name: str, *, help: str, description: str, examples: str) -> argparse.ArgumentParser:
    """A subcommand whose ``--help`` teaches: one-line ``help``, a ``description`` and an ``examples`` epilog
    (dedented; :func:`llmos_tf.cli.build_parser` gives every subcommand the formatter that keeps its lines)."""
    return sub.add_parser(name, help=help, description=description, epilog=textwrap.dedent(examples))


def positive_int(text: str) -> int:
    """argparse type: an integer >= 1, refused before anything loads."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


def add_publish_flags(p: argparse.ArgumentParser, what: str, *, name_example: str | None = None, name_default: str | None = None,
                      unpublished: str | None = None) -> None:
    """``--model_base_path`` and ``--name``: where a command publishes ``<base>/<name>/<version>``, in the words
    TF Serving users know. Both are required unless ``unpublished`` says what happens without a base path."""
    optional = unpublished is not None
    p.add_argument("--model_base_path", required=not optional, default=None, metavar="DIR",
                   help=f"TF Serving model base path the {what} is published to, e.g. saved_models"
                   + (f" (default: none, nothing is published; {unpublished})" if optional else ""))
    p.add_argument("--name", required=not optional, help="model name under the base path"
                   + (f", e.g. {name_example}" if name_example else "") + (f" (default: {name_default})" if name_default else ""))


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
    data_format = task_kind(ref.task).data_format
    if data_format == "conll":
        raise ConfigError(f"{' and '.join(given)}: {ref.path} is a tagger; it reads CoNLL files (token and tag per line), which have no columns")
    if data_format == "per_head" and ref.kind == "run":
        raise ConfigError(f"{' and '.join(given)}: not supported for a multitask run ({ref.path}); name the columns text and label, "
                          "or evaluate its export (saved_models/<name>/<version> --head HEAD)")
