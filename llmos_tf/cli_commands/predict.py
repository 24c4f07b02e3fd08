"""``llmos predict``: label texts with a finished run of any task, an exported version, or a running server.

A run is loaded through its task (:func:`llmos_tf.tasks.load_trained`): every task's loaded run has
``predict(texts)`` (a multitask run also takes ``head``).
"""
from __future__ import annotations

import json
import textwrap

from llmos_tf.cli_common import check_column_flags as _check_column_flags, read_sentences as _read_sentences, read_table as _read_table, warn as _warn
from llmos_tf.model_ref import ModelRef, resolve_model
from llmos_tf.task_kinds import task_kind


def add_predict_parser(sub) -> None:
    p = sub.add_parser(
        "predict",
        help="label texts with a run or an export (or a served model with --server)",
        description="Predict labels for texts given on the command line or in a file, with a finished run, an exported "
        "version (what clients of `llmos serve` get) or a running server.",
        epilog=textwrap.dedent(
            """\
            examples:
              llmos predict --model runs/sample_bilstm "a wonderful film" "a waste of time"
              llmos predict --model runs/sample_bilstm --data data/sample/sentiment_test.csv --json
              llmos predict --model saved_models/banking77_bilstm/1 "I lost my card"
              llmos predict --server 127.0.0.1:8500 --model sample "a wonderful film"
            long texts are cut to fit the terminal; --json prints them whole.
            """
        ),
    )
    p.add_argument("texts", nargs="*", help="texts to label (quote each one)")
    p.add_argument("--model", required=True,
                   help="a finished run folder (runs/<name>), an exported version (saved_models/<name>/<version>), or, with --server, the served model's name")
    p.add_argument("--data", metavar="FILE", help="file of texts: a table with a text column (labels not needed), or for taggers CoNLL / one sentence per line")
    p.add_argument("--text_column", metavar="NAME", help="column of --data holding the texts (default: the run's data.text_column, else text or sentence)")
    p.add_argument("--server", metavar="HOST:PORT", help="ask a running `llmos serve` / tensorflow_model_server over gRPC instead of loading the model here")
    p.add_argument("--version", type=int, help="model version (with --server; default: the latest)")
    p.add_argument("--label", dest="version_label", help="version label, e.g. compressed (with --server)")
    p.add_argument("--json", action="store_true", help="print one JSON object per text (JSON Lines) instead of a table")
    p.add_argument("--head", help="which head of a multitask run or export (with --server: the signature_name, one per head; default: the first head)")
    p.set_defaults(func=_cmd_predict)


def _gather_texts(args, ref: ModelRef | None, run_config=None) -> list[str]:
    """Texts from the command line and ``--data``; warns about empty ones on stderr."""
    texts = list(args.texts)
    if args.data:
        # before TensorFlow is imported (task_kinds, not the task registry), so that a wrong file or column
        # answers at once; ref.task is read from run.json / assets/llmos.json
        if ref is not None and task_kind(ref.task).data_format == "conll":  # a tagger: CoNLL or one sentence per line
            texts += _read_sentences(args.data)
        else:
            default = run_config.data.text_column if run_config is not None else None
            texts += _read_table(args.data, args.text_column or default, None, labelled=False)["text"].tolist()
    return _checked_texts(texts)


def _checked_texts(texts: list[str]) -> list[str]:
    """At least one text; a warning on stderr for each empty one (the model would answer it confidently)."""
    from llmos_tf.errors import LlmosError

    if not texts:
        raise LlmosError("predict: give texts as arguments or --data FILE")
    empty = [i for i, t in enumerate(texts, start=1) if not str(t).strip()]
    if empty:
        which = ", ".join(map(str, empty[:10])) + (", ..." if len(empty) > 10 else "")
        _warn(f"text {which} of {len(texts)} {'is' if len(empty) == 1 else 'are'} empty (or only spaces): "
              "the model answers anyway, from no words at all, so that label means nothing")
    return texts


def _cmd_predict(args) -> int:
    if args.server:
        return _predict_server(args)
    from llmos_tf.errors import ConfigError

    for flag in ("version", "version_label"):
        if getattr(args, flag) is not None:
            raise ConfigError(f"--{'label' if flag == 'version_label' else flag}: only used with --server (a local --model is one version already)")
    ref = resolve_model(args.model, for_server=True)
    if args.text_column:
        _check_column_flags(args, ref)
    run_config = None
    data_format = task_kind(ref.task).data_format  # still before TensorFlow (see _gather_texts)
    if ref.kind == "run" and data_format == "table":  # the run's config names its text column
        from llmos_tf.config import load_config
        from llmos_tf.training import artifacts

        run_config = load_config(ref.path / artifacts.CONFIG_FILE)
    if ref.kind == "run" and data_format == "per_head":  # its file format depends on the head: the run reads it
        run = _load_predictor(ref, args.head)
        texts = _checked_texts(list(args.texts) + (run.read_unlabelled(args.data) if args.data else []))
        frame = run.predict(texts, head=args.head)
    else:
        texts = _gather_texts(args, ref, run_config)  # the data first: a wrong column answers before TensorFlow starts
        frame = _load_predictor(ref, args.head).predict(texts)
    if not args.json and "tags" in frame:
        frame = frame.assign(tags=[" ".join(t) for t in frame["tags"]])[["text", "tags"]]
    _print_predictions(frame, args.json)
    return 0


def _load_predictor(ref: ModelRef, head: str | None):
    """The loaded model behind ``ref``: an export, or a run loaded by its task (``predict(texts) -> DataFrame``)."""
    from llmos_tf.errors import ConfigError

    if ref.is_savedmodel:
        from llmos_tf.serving.local import LocalSavedModel

        return LocalSavedModel.load(ref.path, head)
    from llmos_tf.tasks import load_trained
    from llmos_tf.tasks.multitask import TrainedMultitask

    run = load_trained(ref.path)  # the run's task loads it
    if head and not isinstance(run, TrainedMultitask):
        raise ConfigError(f"--head: {ref.path} is a single-task run; --head picks a head of a multitask run")
    return run


def _print_predictions(frame, as_json: bool) -> None:
    if as_json:
        for row in frame.to_dict(orient="records"):
            print(json.dumps({k: (float(v) if k == "probability" else v) for k, v in row.items()}))
    else:
        from llmos_tf.display import fit_table

        print(fit_table(frame))


def _predict_server(args) -> int:
    import numpy as np
    import pandas as pd

    from llmos_tf.serving.client import Client

    texts = _gather_texts(args, None)
    client = Client(args.server)
    outputs = client.predict(args.model, texts, version=args.version, label=args.version_label, signature=args.head or "serving_default")
    if "probabilities" in outputs:
        probs = np.asarray(outputs["probabilities"])
        labels = [x.decode() if isinstance(x, bytes) else str(x) for x in np.asarray(outputs["label"]).tolist()]
        frame = pd.DataFrame({"text": texts, "label": labels, "probability": probs.max(axis=-1)})
    else:
        tags = np.asarray(outputs["tags"])
        counts = np.asarray(outputs["token_count"])
        frame = pd.DataFrame({"text": texts, "tags": [" ".join(t.decode() for t in row[:n]) for row, n in zip(tags, counts)]})
    _print_predictions(frame, args.json)
    return 0
