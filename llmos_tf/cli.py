"""The ``llmos`` command: train, evaluate, predict, export and serve language models.

Every subcommand has ``--help`` with an example, a description of each flag and
its default. Errors caused by the user's input print one line (``error: <file>,
line N: ...``, naming the flag or key to change) and exit with status 2.

Everything that can be checked without TensorFlow -- the config, ``--set``
overrides, flags, the data file's columns, what ``--model`` points at -- is
checked before TensorFlow is imported, so a typo answers in a fraction of a
second instead of after several seconds of start-up. TensorFlow's own start-up
logs are silenced (:mod:`llmos_tf._env`) unless ``--verbose`` is given.
"""
from __future__ import annotations

import argparse
import json
import pathlib
import shlex
import sys
import textwrap
from typing import Any, Sequence

from llmos_tf.model_ref import ModelRef, resolve_model  # noqa: F401  (re-exported: llmos_tf.cli.resolve_model)

EPILOG = textwrap.dedent(
    """\
    typical session:
      llmos sample-data --out data/sample
      llmos train configs/sample_bilstm.yaml
      llmos evaluate --model runs/sample_bilstm --data data/sample/sentiment_test.csv
      llmos predict --model runs/sample_bilstm "what a lovely film"
      llmos export --run runs/sample_bilstm --model_base_path saved_models --name sample
      llmos predict --model saved_models/sample/1 "what a lovely film"
      llmos serve --model_base_path saved_models --port 8500 --rest_api_port 8501
    add --verbose to any command to see TensorFlow's own logs.
    """
)
# tf.distribute strategies `llmos train --strategy` accepts (llmos_tf.training.distribute.STRATEGIES,
# repeated here so a wrong name is refused before TensorFlow is imported)
STRATEGIES = ("auto", "default", "one_device", "mirrored", "multi_worker", "tpu")
VERBOSE_HELP = "show TensorFlow's start-up and runtime logs (hidden by default; TF_CPP_MIN_LOG_LEVEL, if you set it, always wins)"


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Keeps the hand-wrapped descriptions and examples, and ends every flag's help with its default
    -- ``(default: 6006)``, ``(default: off)`` for a switch, ``(default: not set)``, or ``(required)`` --
    unless the help already says what happens by default."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if not action.option_strings or action.default is argparse.SUPPRESS or "default" in text.lower():
            return text
        if action.required:
            return f"{text} (required)"
        default = action.default
        if action.nargs == 0:  # a switch: it is off unless given
            shown = "off"
        elif default is None or default == []:
            shown = "not set"
        elif isinstance(default, (list, tuple)):
            shown = " ".join(map(str, default))
        else:
            shown = str(default)
        return f"{text} (default: {shown.replace('%', '%%')})"


def _table(rows: Sequence[tuple[str, Any]], title: str | None = None) -> str:
    width = max((len(k) for k, _ in rows), default=0)
    lines = [title, "-" * len(title)] if title else []
    lines += [f"{k.ljust(width)}  {v}" for k, v in rows]
    return "\n".join(lines)


def _fmt(x: Any) -> str:
    return f"{x:.4f}" if isinstance(x, float) else str(x)


def _warn(message: str) -> None:
    print(f"warning: {message}", file=sys.stderr)


# file extensions read as CoNLL (llmos_tf.training.trained_tagger.CONLL_SUFFIXES, which imports TensorFlow)
CONLL_SUFFIXES = (".conll", ".conllu", ".iob", ".iob2", ".bio", ".ner")


def _is_conll(path: str | pathlib.Path) -> bool:
    return pathlib.Path(path).suffix.lower() in CONLL_SUFFIXES


def _read_table(path: str, text_column: str | None, label_column: str | None, *, labelled: bool):
    """A labelled (or unlabelled) table; a missing column names the flag that fixes it."""
    from llmos_tf.data.readers import read_labelled_table, read_texts
    from llmos_tf.errors import MissingColumnError

    try:
        if labelled:
            return read_labelled_table(path, text_column, label_column)
        return read_texts(path, text_column)
    except MissingColumnError as err:
        raise err.with_hint(f"pass --{err.what}_column {shlex.quote(err.suggestion or 'NAME')}") from None


def _read_sentences(path: str) -> list[str]:
    """Sentences for a tagger: a CoNLL file (tokens joined by spaces) or a text file, one sentence per line."""
    from llmos_tf.data.readers import read_utf8_text
    from llmos_tf.errors import DataError

    if _is_conll(path):
        from llmos_tf.data.conll import read_conll

        return [" ".join(tokens) for tokens in read_conll(path)["tokens"]]
    sentences = [line.strip() for line in read_utf8_text(path).splitlines() if line.strip()]
    if not sentences:
        raise DataError(f"{path}: no sentences (expected one sentence per line)")
    return sentences


def _check_column_flags(args, ref: ModelRef) -> None:
    from llmos_tf.errors import ConfigError

    given = [f"--{k}" for k in ("text_column", "label_column") if getattr(args, k, None)]
    if not given:
        return
    if ref.task == "ner":
        raise ConfigError(f"{' and '.join(given)}: {ref.path} is a tagger; it reads CoNLL files (token and tag per line), which have no columns")
    if ref.task == "multitask" and ref.kind == "run":
        raise ConfigError(f"{' and '.join(given)}: not supported for a multitask run ({ref.path}); name the columns text and label, "
                          "or evaluate its export (saved_models/<name>/<version> --head HEAD)")


# -- train ---------------------------------------------------------------
def _add_train(sub) -> None:
    p = sub.add_parser(
        "train",
        help="train a model from a YAML config",
        description="Train the model a YAML config describes. Logs go to TensorBoard under runs/<name>/. "
        "Killed runs resume: run the same command again.",
        epilog=textwrap.dedent(
            """\
            examples:
              llmos train configs/sample_bilstm.yaml
              llmos train configs/sst2_bilstm.yaml --set data.train=../shared/data/sst2/train.tsv --set training.epochs=3
              llmos train configs/sample_bilstm.yaml --set data.train=reviews.csv --text_column review --label_column stars
            overrides are validated before anything runs: an unknown key prints the closest valid one.
            """
        ),
    )
    p.add_argument("config", help="YAML run config (see configs/)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE", help="override a config value, e.g. training.epochs=3 (repeatable)")
    p.add_argument("--text_column", metavar="NAME", help="column of the data files holding the texts (sets data.text_column; default: text or sentence)")
    p.add_argument("--label_column", metavar="NAME", help="column of the data files holding the labels (sets data.label_column; default: label or category)")
    p.add_argument("--overwrite", action="store_true", help="replace a finished run of the same name instead of refusing")
    p.add_argument("--strategy", default="auto", choices=STRATEGIES, help="tf.distribute strategy; auto picks tpu, multi_worker, mirrored or default from what it finds")
    p.add_argument("--tpu", help="Cloud TPU name or grpc:// address for TPUClusterResolver (--strategy auto then picks tpu)")
    p.add_argument("--mixed_precision", choices=("float32", "mixed_float16", "mixed_bfloat16"),
                   help="Keras dtype policy while training (sets training.mixed_precision; default: the config's); outputs stay float32")
    p.add_argument("--profile", nargs="?", const="2,4", default=None, metavar="START,STOP",
                   help="record TensorBoard profiler traces for training batches START..STOP (2,4 when given alone; default: off) in runs/<name>/plugins/profile")
    p.set_defaults(func=_cmd_train)


def _train_overrides(args) -> list[str]:
    """``--set`` values plus the flags that are shortcuts for config keys."""
    extra = []
    if args.mixed_precision:
        extra.append(f"training.mixed_precision={args.mixed_precision}")
    for key in ("text_column", "label_column"):
        if getattr(args, key):
            extra.append(f"data.{key}={json.dumps(getattr(args, key))}")
    return list(args.overrides) + extra


def _cmd_train(args) -> int:
    from llmos_tf.config import load_config

    cfg = load_config(args.config, _train_overrides(args))  # before TensorFlow: a typo answers at once
    from llmos_tf.training.trainer import train

    result = train(cfg, overwrite=args.overwrite, strategy=args.strategy, tpu=args.tpu, command="llmos " + shlex.join(sys.argv[1:]), profile=args.profile)
    print()
    print(_table(train_summary_rows(result), "training finished"))
    return 0


def train_summary_rows(result) -> list[tuple[str, Any]]:
    """The table ``llmos train`` ends with (``result``: a :class:`~llmos_tf.training.run_folder.TrainResult`);
    its commands are ones that work as shown, wherever ``llmos`` does."""
    val = result.metrics["validation"]
    data = result.info.get("data", {})
    rows = [
        ("run", str(result.run_dir)),
        ("task", result.info.get("task", "classification")),
        ("architecture", result.info.get("architecture")),
        ("parameters", f"{result.info.get('parameters', 0):,}"),
        ("train / validation", f"{data.get('train_examples', '?')} / {data.get('validation_examples', '?')}"),
        ("epochs run (best)", f"{result.info.get('epochs_run')} ({result.info.get('best_epoch')})"),
    ]
    if result.info.get("task") == "ner":
        rows += [(f"val {k.replace('_', ' ')}", _fmt(val[k])) for k in ("entity_precision", "entity_recall", "entity_f1", "token_accuracy") if k in val]
    else:
        if "score" in val:  # multitask: mean of the heads' main metrics
            rows.append(("val score", _fmt(val["score"])))
        if "accuracy" in val:
            rows += [("val accuracy", _fmt(val["accuracy"])), ("val macro-F1", _fmt(val["macro_f1"]))]
        for head, m in val.get("heads", {}).items():
            if "entity_f1" in m:
                rows.append((f"val entity F1 [{head}]", _fmt(m["entity_f1"])))
            else:
                rows.append((f"val accuracy [{head}]", _fmt(m["accuracy"])))
    if "test" in result.metrics and "accuracy" in result.metrics["test"]:
        rows += [("test accuracy", _fmt(result.metrics["test"]["accuracy"])), ("test macro-F1", _fmt(result.metrics["test"]["macro_f1"]))]
    rows += [
        ("wall time", f"{result.info['wall_time_seconds']} s"),
        ("model", str(result.run_dir / "model.keras")),
        # `tensorboard` itself is only on PATH inside the venv; `llmos tensorboard` works wherever llmos does
        ("tensorboard", f"llmos tensorboard --logdir {shlex.quote(str(result.run_dir.parent))}"),
    ]
    return rows


# -- evaluate ------------------------------------------------------------
def _add_evaluate(sub) -> None:
    p = sub.add_parser(
        "evaluate",
        help="accuracy, macro-F1, per-class scores and confusion matrix on a labelled file",
        description="Evaluate a finished run, or an exported version (the SavedModel clients are served), on a labelled "
        "file (csv, tsv, jsonl, parquet; CoNLL for taggers).",
        epilog=textwrap.dedent(
            """\
            examples:
              llmos evaluate --model runs/sample_bilstm --data data/sample/sentiment_test.csv --json
              llmos evaluate --model saved_models/banking77_bilstm/1 --data test.csv --text_column query --label_column intent
            """
        ),
    )
    p.add_argument("--model", required=True, metavar="RUN_OR_EXPORT",
                   help="a finished run folder (runs/<name>) or an exported version (saved_models/<name>/<version>; a model folder means its highest version)")
    p.add_argument("--data", required=True, metavar="FILE", help="labelled data file with a text and a label column")
    p.add_argument("--text_column", metavar="NAME", help="column holding the texts (default: the run's data.text_column, else text or sentence)")
    p.add_argument("--label_column", metavar="NAME", help="column holding the labels (default: the run's data.label_column, else label or category)")
    p.add_argument("--json", action="store_true", help="print exactly one JSON object instead of tables")
    p.add_argument("--head", help="which head of a multitask run or export (default: its first head)")
    __import__("llmos_tf.explain.trust", fromlist=["_"]).add_trust_arguments(p)  # --robustness, --reliability_png (ECE always)
    p.set_defaults(func=_cmd_evaluate)


def _evaluate_metrics(args, ref: ModelRef) -> dict[str, Any]:
    """Read the data (no TensorFlow yet: a wrong column fails fast), then load the model and score it."""
    if ref.is_savedmodel:
        from llmos_tf.serving.local import LocalSavedModel

        if ref.task == "ner" or (ref.task is None and _is_conll(args.data)):
            from llmos_tf.data.conll import read_conll

            frame = read_conll(args.data)
            return LocalSavedModel.load(ref.path, args.head).evaluate_conll(frame)
        if ref.task == "multitask":  # which data format depends on the head's signature
            model = LocalSavedModel.load(ref.path, args.head)
            if model.task == "ner":
                from llmos_tf.data.conll import read_conll

                return model.evaluate_conll(read_conll(args.data))
            return model.evaluate_table(_read_table(args.data, args.text_column, args.label_column, labelled=True))
        frame = _read_table(args.data, args.text_column, args.label_column, labelled=True)
        return LocalSavedModel.load(ref.path, args.head).evaluate_table(frame)
    if ref.task == "multitask":
        from llmos_tf.training.multitask import TrainedMultitask

        return TrainedMultitask.load(ref.path).evaluate(args.data, args.head)
    if ref.task == "ner":
        from llmos_tf.training.trained_tagger import TrainedTagger

        return TrainedTagger.load(ref.path).evaluate(args.data)
    from llmos_tf.config import load_config
    from llmos_tf.training import artifacts

    d = load_config(ref.path / artifacts.CONFIG_FILE).data
    frame = _read_table(args.data, args.text_column or d.text_column, args.label_column or d.label_column, labelled=True)
    from llmos_tf.training.trained_run import TrainedRun

    return TrainedRun.load(ref.path).evaluate(frame)


def _cmd_evaluate(args) -> int:
    from llmos_tf.display import terminal_width
    from llmos_tf.training.evaluation import per_class_frame

    ref = resolve_model(args.model)
    _check_column_flags(args, ref)
    metrics = _evaluate_metrics(args, ref)
    trust = __import__("llmos_tf.explain.trust", fromlist=["_"])  # ECE + reliability diagram, --robustness (classifiers)
    metrics = trust.evaluate_trust(args, ref, metrics)
    width = terminal_width()
    if "entity_f1" in metrics:  # an NER run or an NER head
        from llmos_tf.training.conlleval import format_report, per_type_frame

        if args.json:
            print(json.dumps({"model": str(args.model), "data": str(args.data), **metrics}, default=float))
        else:
            print(format_report(metrics))
            print()
            print(per_type_frame(metrics).round(4).to_string(line_width=width))
        return 0
    if args.json:
        print(json.dumps({"model": str(args.model), "data": str(args.data), **metrics}))
        return 0
    print(_table([("examples", metrics["examples"]), ("accuracy", _fmt(metrics["accuracy"])), ("macro-F1", _fmt(metrics["macro_f1"]))], f"{args.model} on {args.data}"))
    print()
    print(per_class_frame(metrics).round(4).to_string(line_width=width))
    if len(metrics["labels"]) <= 12:
        import pandas as pd

        print("\nconfusion matrix (rows: true, columns: predicted)")
        print(pd.DataFrame(metrics["confusion_matrix"], index=metrics["labels"], columns=metrics["labels"]).to_string(line_width=width))
    trust.print_trust(metrics)
    return 0


# -- predict -------------------------------------------------------------
def _add_predict(sub) -> None:
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
        tagger = ref is not None and ref.task == "ner"
        if tagger:
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
    if ref.kind == "run" and ref.task == "classification":
        from llmos_tf.config import load_config
        from llmos_tf.training import artifacts

        run_config = load_config(ref.path / artifacts.CONFIG_FILE)
    if ref.kind == "run" and ref.task == "multitask":
        from llmos_tf.training.multitask import TrainedMultitask

        run = TrainedMultitask.load(ref.path)
        texts = _checked_texts(list(args.texts) + (run.read_unlabelled(args.data) if args.data else []))
        frame = run.predict(texts, args.head)
    else:
        texts = _gather_texts(args, ref, run_config)
        frame = _load_predictor(ref, args.head).predict(texts)
    if not args.json and "tags" in frame:
        frame = frame.assign(tags=[" ".join(t) for t in frame["tags"]])[["text", "tags"]]
    _print_predictions(frame, args.json)
    return 0


def _load_predictor(ref: ModelRef, head: str | None):
    """The loaded model behind ``ref`` (an object with ``predict(texts) -> DataFrame``)."""
    from llmos_tf.errors import ConfigError

    if ref.is_savedmodel:
        from llmos_tf.serving.local import LocalSavedModel

        return LocalSavedModel.load(ref.path, head)
    if head:
        raise ConfigError(f"--head: {ref.path} is a single-task run; --head picks a head of a multitask run")
    if ref.task == "ner":
        from llmos_tf.training.trained_tagger import TrainedTagger

        return TrainedTagger.load(ref.path)
    from llmos_tf.training.trained_run import TrainedRun

    return TrainedRun.load(ref.path)


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


# -- sample data ---------------------------------------------------------
def _add_sample_data(sub) -> None:
    p = sub.add_parser("sample-data", help="write the project's small offline sample data sets", description="Write the sample data sets used by the demo, the notebooks and the tests.")
    p.add_argument("--out", default="data/sample", help="folder to write the sample data sets into")
    p.add_argument("--seed", type=int, default=0, help="random seed of the generated sentences (same seed, same files)")
    p.set_defaults(func=_cmd_sample_data)


def _cmd_sample_data(args) -> int:
    from llmos_tf.data.sample import write_sample_data

    paths = write_sample_data(args.out, seed=args.seed)
    print(_table([(name, str(path)) for name, path in paths.items()], f"sample data in {args.out}"))
    return 0


# -- doctor --------------------------------------------------------------
def _add_doctor(sub) -> None:
    p = sub.add_parser(
        "doctor",
        help="devices, the strategy --strategy auto would pick, TPU readiness of a config",
        description="Print the devices TensorFlow sees, the tf.distribute strategy `--strategy auto` would choose, "
        "and, for a config, what would break on a TPU.",
        epilog="example:\n  llmos doctor configs/sst2_bert.yaml --set data.tpu_mode=true",
    )
    p.add_argument("config", nargs="?", help="run config to check for TPU readiness (optional)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE", help="override a config value, as in llmos train (repeatable)")
    p.add_argument("--tpu", help="TPU name or grpc:// address for TPUClusterResolver")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    p.set_defaults(func=_cmd_doctor)


def _cmd_doctor(args) -> int:
    from llmos_tf.errors import ConfigError

    cfg = None
    if args.config:
        from llmos_tf.config import load_config

        cfg = load_config(args.config, args.overrides)  # before TensorFlow
    elif args.overrides:
        raise ConfigError("--set: doctor applies overrides to a config; give the config file too")
    from llmos_tf.training.distribute import describe_choice
    from llmos_tf.training.doctor import machine_report, tpu_findings

    report = machine_report()
    report["strategy_auto"] = describe_choice("auto", tpu=args.tpu)
    if cfg is not None:
        report["tpu_findings"] = tpu_findings(cfg)
    if args.json:
        print(json.dumps(report))
        return 0
    rows = [(k, ", ".join(v) if isinstance(v, list) else v) for k, v in report.items() if k != "tpu_findings"]
    print(_table(rows, "llmos doctor"))
    if args.config:
        findings = report["tpu_findings"]
        print(f"\nTPU readiness of {args.config}: " + ("ready" if not findings else f"{len(findings)} problem(s)"))
        for item in findings:
            print(f"  - {item}")
    return 0


# -- optional subcommands from other modules -------------------------------
def _add_optional(sub) -> None:
    """Subcommands whose modules add their own parsers (export, compress, distill, serve, tensorboard)."""
    try:
        from llmos_tf.export.cli import add_export_parser
    except ImportError:
        pass
    else:
        add_export_parser(sub)
    from llmos_tf.compression.cli import add_compress_parser, add_distill_parser

    add_compress_parser(sub)
    add_distill_parser(sub)
    __import__("llmos_tf.compose.cli", fromlist=["add_compose_parsers"]).add_compose_parsers(sub)  # ensemble, encode, index
    __import__("llmos_tf.explain.cli", fromlist=["_"]).add_explain_parsers(sub)  # explain, calibrate
    try:
        from llmos_tf.serving.cli import add_serve_arguments, run_serve
    except ImportError:
        pass
    else:
        p = sub.add_parser(
            "serve",
            help="serve saved_models/ over TF Serving's gRPC and REST APIs",
            description="A TF-Serving-compatible model server (gRPC PredictionService/ModelService and the REST API), "
            "with tensorflow_model_server's flag names.",
            epilog="example:\n  llmos serve --model_base_path saved_models --port 8500 --rest_api_port 8501",
        )
        add_serve_arguments(p)
        p.set_defaults(func=run_serve)
    p = sub.add_parser(
        "tensorboard",
        help="launch TensorBoard on runs/",
        description="Launch TensorBoard (the one installed with llmos) on a runs folder: training curves, hparams, "
        "profiles and compression reports.",
        epilog="example:\n  llmos tensorboard --logdir runs --port 6006\n  then open http://127.0.0.1:6006",
    )
    p.add_argument("--logdir", default="runs", help="folder of runs to show (each run's TensorBoard logs are in runs/<name>/)")
    p.add_argument("--port", type=int, default=6006, help="port TensorBoard listens on")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on; 0.0.0.0 for every interface")
    p.set_defaults(func=_cmd_tensorboard)


def _cmd_tensorboard(args) -> int:
    from llmos_tf.errors import ConfigError

    if not pathlib.Path(args.logdir).is_dir():
        raise ConfigError(f"--logdir {args.logdir}: no such folder; train a run first (llmos train CONFIG) or point at its output_dir")
    from tensorboard import program

    board = program.TensorBoard()
    board.configure(argv=[None, "--logdir", args.logdir, "--port", str(args.port), "--host", args.host])
    url = board.launch()
    print(f"TensorBoard at {url} (Ctrl-C to stop)")
    import time

    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        return 0


def _finish_subparsers(sub) -> None:
    """Every subcommand: flags described with their defaults, and ``--verbose``."""
    for parser in sub.choices.values():
        parser.formatter_class = HelpFormatter
        if "--verbose" not in parser._option_string_actions:
            parser.add_argument("--verbose", action="store_true", help=VERBOSE_HELP)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="llmos",
        description="llmos: turn labelled text into served language models (BiLSTM and BERT on TensorFlow, TF Serving compatible).",
        epilog=EPILOG,
        formatter_class=HelpFormatter,
    )
    parser.add_argument("--verbose", dest="verbose_logs", action="store_true", help=VERBOSE_HELP)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    _add_train(sub)
    _add_evaluate(sub)
    _add_predict(sub)
    _add_sample_data(sub)
    _add_doctor(sub)
    from llmos_tf.training.pretrain_cli import add_pretrain_parser

    add_pretrain_parser(sub)
    _add_optional(sub)
    _finish_subparsers(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 1
    from llmos_tf import _env
    from llmos_tf.errors import LlmosError

    # before anything imports TensorFlow; `pretrain --verbose N` (Keras progress) counts too
    _env.set_verbose(bool(args.verbose_logs or getattr(args, "verbose", False)))
    try:
        return int(args.func(args) or 0)
    except LlmosError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
