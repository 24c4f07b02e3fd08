"""The ``llmos`` command: train, evaluate, predict, export and serve language models.

Every subcommand has ``--help`` with an example. Errors caused by the user's
input print one line (``error: <file>, line N: ...``) and exit with status 2.
"""
from __future__ import annotations

import argparse
import json
import shlex
import sys
import textwrap
from typing import Any, Sequence

EPILOG = textwrap.dedent(
    """\
    typical session:
      llmos sample-data --out data/sample
      llmos train configs/sample_bilstm.yaml
      llmos evaluate --model runs/sample_bilstm --data data/sample/sentiment_test.csv
      llmos predict --model runs/sample_bilstm "what a lovely film"
      llmos export --run runs/sample_bilstm --model_base_path saved_models --name sample
      llmos serve --model_base_path saved_models --port 8500 --rest_api_port 8501
    """
)


def _table(rows: Sequence[tuple[str, Any]], title: str | None = None) -> str:
    width = max((len(k) for k, _ in rows), default=0)
    lines = [title, "-" * len(title)] if title else []
    lines += [f"{k.ljust(width)}  {v}" for k, v in rows]
    return "\n".join(lines)


def _fmt(x: Any) -> str:
    return f"{x:.4f}" if isinstance(x, float) else str(x)


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
            overrides are validated: an unknown key prints the valid ones.
            """
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("config", help="YAML run config (see configs/)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE", help="override a config value, e.g. training.epochs=3 (repeatable)")
    p.add_argument("--overwrite", action="store_true", help="replace a finished run of the same name instead of refusing")
    p.add_argument("--strategy", default="auto", help="tf.distribute strategy: auto (default), default, one_device, mirrored, multi_worker, tpu")
    p.add_argument("--tpu", help="Cloud TPU name or grpc:// address for TPUClusterResolver (--strategy auto then picks tpu)")
    p.add_argument("--mixed_precision", choices=("float32", "mixed_float16", "mixed_bfloat16"),
                   help="Keras dtype policy while training (sets training.mixed_precision); outputs stay float32")
    p.add_argument("--profile", nargs="?", const="2,4", default=None, metavar="START,STOP",
                   help="record TensorBoard profiler traces for training batches START..STOP (default 2,4) in runs/<name>/plugins/profile")
    p.set_defaults(func=_cmd_train)


def _cmd_train(args) -> int:
    from llmos_tf.config import load_config
    from llmos_tf.training.trainer import train

    overrides = args.overrides + ([f"training.mixed_precision={args.mixed_precision}"] if args.mixed_precision else [])
    cfg = load_config(args.config, overrides)
    result = train(cfg, overwrite=args.overwrite, strategy=args.strategy, tpu=args.tpu, command="llmos " + shlex.join(sys.argv[1:]), profile=args.profile)
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
        ("tensorboard", f"tensorboard --logdir {result.run_dir.parent}"),
    ]
    print()
    print(_table(rows, "training finished"))
    return 0


# -- evaluate ------------------------------------------------------------
def _add_evaluate(sub) -> None:
    p = sub.add_parser(
        "evaluate",
        help="accuracy, macro-F1, per-class scores and confusion matrix on a labelled file",
        description="Evaluate a finished run on a labelled file (csv, tsv, jsonl, parquet).",
        epilog="example:\n  llmos evaluate --model runs/sample_bilstm --data data/sample/sentiment_test.csv --json",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--model", required=True, metavar="RUN_DIR", help="a finished run folder (runs/<name>)")
    p.add_argument("--data", required=True, metavar="FILE", help="labelled data file with the run's text and label columns")
    p.add_argument("--json", action="store_true", help="print exactly one JSON object instead of tables")
    p.add_argument("--head", help="which head of a multitask run")
    p.set_defaults(func=_cmd_evaluate)


def _cmd_evaluate(args) -> int:
    from llmos_tf.training.evaluation import per_class_frame
    from llmos_tf.training.trained_run import TrainedRun
    from llmos_tf.training.trained_tagger import TrainedTagger, is_tagger_run

    from llmos_tf.training.multitask import TrainedMultitask, is_multitask_run

    if is_multitask_run(args.model):
        metrics = TrainedMultitask.load(args.model).evaluate(args.data, args.head)
    elif is_tagger_run(args.model):
        metrics = TrainedTagger.load(args.model).evaluate(args.data)
    else:
        metrics = TrainedRun.load(args.model).evaluate(args.data)
    if "entity_f1" in metrics:  # an NER run or an NER head
        from llmos_tf.training.conlleval import format_report, per_type_frame

        if args.json:
            print(json.dumps({"model": str(args.model), "data": str(args.data), **metrics}, default=float))
        else:
            print(format_report(metrics))
            print()
            print(per_type_frame(metrics).round(4).to_string())
        return 0
    if args.json:
        print(json.dumps({"model": str(args.model), "data": str(args.data), **metrics}))
        return 0
    print(_table([("examples", metrics["examples"]), ("accuracy", _fmt(metrics["accuracy"])), ("macro-F1", _fmt(metrics["macro_f1"]))], f"{args.model} on {args.data}"))
    print()
    print(per_class_frame(metrics).round(4).to_string())
    if len(metrics["labels"]) <= 12:
        import pandas as pd

        print("\nconfusion matrix (rows: true, columns: predicted)")
        print(pd.DataFrame(metrics["confusion_matrix"], index=metrics["labels"], columns=metrics["labels"]).to_string())
    return 0


# -- predict -------------------------------------------------------------
def _add_predict(sub) -> None:
    p = sub.add_parser(
        "predict",
        help="label texts with a run (or a served model with --server)",
        description="Predict labels for texts given on the command line or in a file.",
        epilog=textwrap.dedent(
            """\
            examples:
              llmos predict --model runs/sample_bilstm "a wonderful film" "a waste of time"
              llmos predict --model runs/sample_bilstm --data data/sample/sentiment_test.csv --json
              llmos predict --server 127.0.0.1:8500 --model sample "a wonderful film"
            """
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("texts", nargs="*", help="texts to label")
    p.add_argument("--model", required=True, help="run folder, or the model name when --server is given")
    p.add_argument("--data", metavar="FILE", help="file with a text column (labels not needed)")
    p.add_argument("--server", metavar="HOST:PORT", help="ask a running `llmos serve` / tensorflow_model_server over gRPC")
    p.add_argument("--version", type=int, help="model version (with --server)")
    p.add_argument("--label", dest="version_label", help="version label (with --server)")
    p.add_argument("--json", action="store_true", help="print one JSON object per text (JSON Lines)")
    p.add_argument("--head", help="which head of a multitask run (with --server: the signature_name, one per head)")
    p.set_defaults(func=_cmd_predict)


def _cmd_predict(args) -> int:
    from llmos_tf.errors import LlmosError

    if args.server:
        return _predict_server(args)
    from llmos_tf.training.trained_run import TrainedRun
    from llmos_tf.training.trained_tagger import TrainedTagger, is_tagger_run

    from llmos_tf.training.multitask import TrainedMultitask, is_multitask_run

    if is_multitask_run(args.model):
        run = TrainedMultitask.load(args.model)
    else:
        run = TrainedTagger.load(args.model) if is_tagger_run(args.model) else TrainedRun.load(args.model)
    texts = list(args.texts)
    if args.data:
        texts += run.read_unlabelled(args.data)
    if not texts:
        raise LlmosError("predict: give texts as arguments or --data FILE")
    frame = run.predict(texts, args.head) if is_multitask_run(args.model) else run.predict(texts)
    if not args.json and "tags" in frame:
        frame = frame.assign(tags=[" ".join(t) for t in frame["tags"]])[["text", "tags"]]
    _print_predictions(frame, args.json)
    return 0


def _print_predictions(frame, as_json: bool) -> None:
    if as_json:
        for row in frame.to_dict(orient="records"):
            print(json.dumps({k: (float(v) if k == "probability" else v) for k, v in row.items()}))
    else:
        import pandas as pd

        with pd.option_context("display.max_colwidth", 60, "display.width", 120):
            print(frame.to_string(index=False, float_format=lambda x: f"{x:.3f}"))


def _predict_server(args) -> int:
    import numpy as np
    import pandas as pd

    from llmos_tf.errors import LlmosError
    from llmos_tf.serving.client import Client

    texts = list(args.texts)
    if args.data:
        from llmos_tf.data.readers import read_texts

        texts += read_texts(args.data)["text"].tolist()
    if not texts:
        raise LlmosError("predict: give texts as arguments or --data FILE")
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
    p.add_argument("--out", default="data/sample", help="output folder (default: data/sample)")
    p.add_argument("--seed", type=int, default=0)
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
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("config", nargs="?", help="run config to check for TPU readiness")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--tpu", help="TPU name (TPUClusterResolver)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_cmd_doctor)


def _cmd_doctor(args) -> int:
    from llmos_tf.training.distribute import describe_choice
    from llmos_tf.training.doctor import machine_report, tpu_findings

    report = machine_report()
    report["strategy_auto"] = describe_choice("auto", tpu=args.tpu)
    if args.config:
        from llmos_tf.config import load_config

        cfg = load_config(args.config, args.overrides)
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
    """Subcommands whose modules may add their own parsers (export, serve, ...)."""
    try:
        from llmos_tf.export.cli import add_export_parser
    except ImportError:
        pass
    else:
        add_export_parser(sub)
    from llmos_tf.compression.cli import add_compress_parser, add_distill_parser

    add_compress_parser(sub)
    add_distill_parser(sub)
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
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        add_serve_arguments(p)
        p.set_defaults(func=run_serve)
    p = sub.add_parser("tensorboard", help="launch TensorBoard on runs/", description="Launch TensorBoard on a runs folder.")
    p.add_argument("--logdir", default="runs")
    p.add_argument("--port", type=int, default=6006)
    p.add_argument("--host", default="127.0.0.1")
    p.set_defaults(func=_cmd_tensorboard)


def _cmd_tensorboard(args) -> int:
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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="llmos",
        description="llmos: turn labelled text into served language models (BiLSTM and BERT on TensorFlow, TF Serving compatible).",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    _add_train(sub)
    _add_evaluate(sub)
    _add_predict(sub)
    _add_sample_data(sub)
    _add_doctor(sub)
    from llmos_tf.training.pretrain_cli import add_pretrain_parser

    add_pretrain_parser(sub)
    _add_optional(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 1
    from llmos_tf.errors import LlmosError

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
