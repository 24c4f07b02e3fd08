"""The ``llmos`` command: train, evaluate, predict, export and serve language models.

Every subcommand has ``--help`` with an example, a description of each flag and
its default. Errors caused by the user's input print one line (``error: <file>,
line N: ...``, naming the flag or key to change) and exit with status 2.

Everything that can be checked without TensorFlow -- the config, ``--set``
overrides, flags, the data file's columns, what ``--model`` points at -- is
checked before TensorFlow is imported, so a typo answers in a fraction of a
second instead of after several seconds of start-up. TensorFlow's own start-up
logs are silenced (:mod:`llmos_tf._env`) unless ``--verbose`` is given.

The larger command bodies live in :mod:`llmos_tf.cli_commands` (``train``,
``predict``) and the helpers they share with ``evaluate`` in :mod:`llmos_tf.cli_common`;
other packages register theirs in :func:`_add_optional`.
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
from llmos_tf.task_kinds import task_kind
from llmos_tf.cli_common import (  # noqa: F401  (shared with the command modules; the old private names stay)
    CONLL_SUFFIXES,
    STRATEGIES,
    check_column_flags as _check_column_flags,
    fmt as _fmt,
    is_conll as _is_conll,
    read_sentences as _read_sentences,
    read_table as _read_table,
    table as _table,
    warn as _warn,
)
from llmos_tf.cli_commands.predict import _gather_texts, add_predict_parser  # noqa: F401  (_gather_texts: tests)
from llmos_tf.cli_commands.train import add_train_parser, train_summary_rows  # noqa: F401  (train_summary_rows: tests, notebooks)

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


# -- train: llmos_tf/cli_commands/train.py ----------------------------------
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
    data_format = task_kind(ref.task).data_format
    if ref.is_savedmodel:
        from llmos_tf.serving.local import LocalSavedModel

        if data_format == "conll" or (ref.task is None and _is_conll(args.data)):  # a card without a task: the file says
            from llmos_tf.data.conll import read_conll

            frame = read_conll(args.data)
            return _trust().evaluate_tagger(args, ref, frame)  # one prediction: conlleval, --robustness
        if data_format == "per_head":  # which data format depends on the head's signature
            model = LocalSavedModel.load(ref.path, args.head)
            if task_kind(model.task).data_format == "conll":
                from llmos_tf.data.conll import read_conll

                return model.evaluate_conll(read_conll(args.data))
            return model.evaluate_table(_read_table(args.data, args.text_column, args.label_column, labelled=True))
        frame = _read_table(args.data, args.text_column, args.label_column, labelled=True)
        return _trust().evaluate_classifier(args, ref, frame)  # one prediction: metrics, ECE, --robustness
    if data_format == "per_head":
        from llmos_tf.tasks.multitask import TrainedMultitask

        return TrainedMultitask.load(ref.path).evaluate(args.data, args.head)
    if data_format == "conll":
        from llmos_tf.data.conll import read_conll

        return _trust().evaluate_tagger(args, ref, read_conll(args.data))
    from llmos_tf.config import load_config
    from llmos_tf.training import artifacts

    d = load_config(ref.path / artifacts.CONFIG_FILE).data
    frame = _read_table(args.data, args.text_column or d.text_column, args.label_column or d.label_column, labelled=True)
    return _trust().evaluate_classifier(args, ref, frame)


def _trust():
    """llmos_tf.explain.trust: classifier metrics + ECE + reliability diagram, tagger metrics, --robustness."""
    return __import__("llmos_tf.explain.trust", fromlist=["_"])


def _cmd_evaluate(args) -> int:
    from llmos_tf.display import terminal_width
    from llmos_tf.training.evaluation import per_class_frame

    ref = resolve_model(args.model)
    _check_column_flags(args, ref)
    metrics = _evaluate_metrics(args, ref)
    trust = _trust()
    width = terminal_width()
    if "entity_f1" in metrics:  # an NER run or an NER head
        from llmos_tf.metrics.conlleval import format_report, per_type_frame

        if args.json:
            print(json.dumps({"model": str(args.model), "data": str(args.data), **metrics}, default=float))
        else:
            print(format_report(metrics))
            print()
            print(per_type_frame(metrics).round(4).to_string(line_width=width))
            trust.print_trust(metrics)  # --robustness: entity F1 and flip rate per perturbation
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


# -- predict: llmos_tf/cli_commands/predict.py ------------------------------


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
    add_train_parser(sub)
    _add_evaluate(sub)
    add_predict_parser(sub)
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
