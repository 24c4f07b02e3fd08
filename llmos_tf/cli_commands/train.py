"""``llmos train``: its parser, the command, and the table it ends with."""
from __future__ import annotations

import json
import shlex
import sys
import textwrap
from typing import Any

from llmos_tf.cli_common import STRATEGIES, fmt as _fmt, table as _table


def add_train_parser(sub) -> None:
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
    from llmos_tf.tasks import task_class  # TensorFlow is loaded: the run's task says what its headline figures are

    task = task_class(result.info.get("task", "classification"), every=True)
    rows += [(f"val {name}", _fmt(val[k])) for k, name in task.summary_metrics if k != "examples" and k in val]
    if task.kind.has_heads:
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
