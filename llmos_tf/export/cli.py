"""``llmos export``: a finished run → ``<model_base_path>/<name>/<version>/``."""
from __future__ import annotations

import argparse
import textwrap


def add_export_parser(sub) -> None:
    p = sub.add_parser(
        "export",
        help="export a run as a SavedModel in TF Serving layout (raw text in)",
        description="Export a finished run as a SavedModel whose serving_default signature takes raw strings "
        "(the tokenizer is inside), into TF Serving's <base>/<name>/<version>/ layout, with labels, a model card "
        "and a warm-up file.",
        epilog=textwrap.dedent(
            """\
            examples:
              llmos export --run runs/sample_bilstm --model_base_path saved_models --name sample
              llmos export --run runs/sst2_bilstm --name sst2_bilstm --version 2 --force
              llmos export --run runs/sst2_distilled --name sst2_bilstm_distilled --label distilled
                  (clients then ask for version_label "distilled"; labels live in <base>/models.config)
            """
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--run", required=True, metavar="RUN_DIR", help="finished run folder")
    p.add_argument("--model_base_path", default="saved_models", help="TF Serving model base path (default: saved_models)")
    p.add_argument("--name", required=True, help="model name (the folder under the base path)")
    p.add_argument("--version", type=int, help="version number to write, the folder under <base>/<name>/ (default: the next free number)")
    p.add_argument("--force", action="store_true", help="overwrite an existing version")
    p.add_argument("--lstm_matmul_dtype", choices=("float32", "bfloat16"), default="float32",
                   help="BiLSTM classifiers: matmul precision in the served graph; bfloat16 is faster on CPUs with "
                        "AVX512-BF16/AMX, slower on others (default: float32)")
    p.add_argument("--label", dest="labels", action="append", default=[], metavar="LABEL",
                   help="point this version label at the new version in <model_base_path>/models.config (repeatable)")
    p.set_defaults(func=_cmd_export)


def _cmd_export(args) -> int:
    from llmos_tf.model_ref import resolve_model
    from llmos_tf.errors import RunError

    ref = resolve_model(args.run, flag="--run")  # before TensorFlow: a wrong path answers at once
    if ref.is_savedmodel:
        raise RunError(f"--run {args.run}: already an exported version; export takes the run folder it came from (runs/<name>)")
    from llmos_tf.export.model_server_config import set_version_label
    from llmos_tf.export.writer import export_run, main_command
    from llmos_tf.serving.model_config import check_label

    for label in args.labels:
        check_label(label)  # before the export: a bad label must not leave a new version behind
    path = export_run(args.run, args.model_base_path, args.name, version=args.version, force=args.force, command=main_command(),
                      lstm_matmul_dtype=args.lstm_matmul_dtype)
    print(f"exported {args.run} -> {path}")
    for label in args.labels:
        config = set_version_label(args.model_base_path, args.name, label, int(path.name))
        print(f"version label {label!r} -> {args.name}/{path.name} in {config}")
    if args.labels:
        print(f"serve it:  llmos serve --model_config_file {args.model_base_path}/models.config --port 8500 --rest_api_port 8501")
    else:
        print(f"serve it:  llmos serve --model_base_path {args.model_base_path} --port 8500 --rest_api_port 8501")
    return 0
