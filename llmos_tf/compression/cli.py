"""``llmos compress``: prune, quantize and publish a trained run as labelled model versions."""
from __future__ import annotations

import argparse
import sys

from llmos_tf.cli_common import add_command, add_publish_flags, positive_int as _positive_int


def _fraction(text: str) -> float:
    """argparse type: a number strictly between 0 and 1, refused before anything loads."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a fraction between 0 and 1, got {text!r}") from None
    if not 0.0 < value < 1.0:
        raise argparse.ArgumentTypeError(f"expected a fraction between 0 and 1 (exclusive), got {text}")
    return value


def _non_negative(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected a non-negative number, got {text}")
    return value


def _layer_list(text: str) -> tuple[int, ...]:
    """argparse type: ``0,2,4`` → (0, 2, 4); distinct non-negative integers."""
    try:
        layers = tuple(int(x) for x in text.split(",") if x.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated layer indices such as 0,2,4; got {text!r}") from None
    if not layers or min(layers) < 0 or len(set(layers)) != len(layers):
        raise argparse.ArgumentTypeError(f"expected distinct layer indices from 0, such as 0,2,4; got {text!r}")
    return layers


def add_compress_parser(sub) -> None:
    p = add_command(
        sub,
        "compress",
        help="prune and quantize a trained run (TF-MOT, TFLite); publish the variants that keep the metric as versions",
        description="Build compressed variants of a finished run (TF-MOT magnitude pruning while fine-tuning, TFLite "
        "post-training quantization, quantization-aware training), measure each through its string-in serving "
        "signature (accuracy or entity F1, sparsity, SavedModel and model.tflite sizes raw and gzipped, p50 latency "
        "at batch 1, throughput at batch 32) and, with --model_base_path, publish those within --max_drop of the "
        "dense model as new versions of <model_base_path>/<name>/ with version labels. Without --model_base_path "
        "nothing is published: the variants stay staged in <report_dir>/variants/.",
        examples="""\
            examples:
              llmos compress --run runs/sample_bilstm --prune --target_sparsity 0.8 --report
                  (measures only: the variants stay staged in runs/sample_bilstm/compression/variants/)
              llmos compress --run runs/sst2_bert --prune --target_sparsity 0.5 --quantize dynamic int8 \\
                  --model_base_path saved_models --name sst2_bert --publish compressed --max_drop 0.01 --report
              llmos compress --run runs/sst2_bert --target_sparsity 0.8 --epochs 2 --distill_alpha 0.2 --report
              llmos compress --run runs/sample_bilstm --no-prune --quantize float16 --qat
              llmos compress --run runs/sst2_bert --no-prune --trim_vocabulary --keep_layers 0,2,4 --prune_ffn 0.5 \
                  --distill_alpha 0.5 --steps_per_epoch 300 --quantize dynamic --report
                  (structured: a row per step, each smaller in every matrix, then int8)

            structured compression (BERT classifiers), applied in this order, each step a row of the report:
              --trim_vocabulary [CORPUS]  keep the WordPiece tokens the training texts (or CORPUS) use; the report
                                          gives the share of validation tokens kept; others become [UNK]
              --keep_layers 0,2,4         keep those transformer blocks, then fine-tune (distil with --distill_alpha)
              --prune_heads F / --prune_ffn F
                                          remove the fraction F of attention heads / feed-forward neurons with the
                                          lowest gradient x weight importance (Michel et al. 2019), then fine-tune
            --prune, --quantize and --qat then build on the last structured model.

            what clients get by default never silently gets worse:
              - nothing is written to a model base path unless --model_base_path is given;
              - a variant whose metric drop exceeds --max_drop (e.g. 0.01 = 1 point of accuracy) is never
                published; it stays staged in <report_dir>/variants/<name>/<n>/ and the output and the report
                (report.json, report.md) say so, with its drop;
              - the smallest variant within --max_drop gets the label 'compressed' and is published LAST, so it
                is the highest version: what TF Serving answers when a request names no version or label;
              - if no variant is within --max_drop, nothing is published; the message names the smallest drop,
                and running again with a larger --max_drop accepts it (the pruned model is cached).

            labels: each published version gets its variant's name as a version label (pruned, pruned_dynamic,
            ...) and the chosen one also 'compressed'; they are written to <model_base_path>/models.config, so:
              llmos serve --model_config_file saved_models/models.config
            and clients ask for version_label "compressed" (or no version at all).
            """,
    )
    p.add_argument("--run", required=True, metavar="RUN_DIR", help="finished run folder (classifier or NER tagger)")
    p.add_argument("--prune", action=argparse.BooleanOptionalAction, default=True, help="magnitude pruning with fine-tuning (default: on)")
    p.add_argument("--target_sparsity", type=_fraction, default=0.8, help="final fraction of zero weights in pruned layers (default 0.8)")
    p.add_argument("--structured_2_4", action="store_true", help="2:4 structured sparsity (2 zeros in every 4 weights) where TF-MOT supports it")
    p.add_argument("--no_prune_embeddings", dest="prune_embeddings", action="store_false", help="leave embedding tables dense")
    p.add_argument("--quantize", nargs="*", default=["dynamic"], metavar="MODE", choices=("dynamic", "int8", "float16", "none"),
                   help="TFLite variants: dynamic (int8 weights), int8 (full integer, calibrated on training texts), float16; "
                   "none for no TFLite variant (default: dynamic)")
    p.add_argument("--qat", action="store_true", help="also quantization-aware training (sparsity-preserving after --prune) → int8 TFLite")
    p.add_argument("--epochs", type=int, default=1, help="fine-tuning epochs while pruning / QAT (default 1)")
    p.add_argument("--steps_per_epoch", type=int, help="cap the steps of each fine-tuning epoch (default: no cap, one pass over the training data)")
    p.add_argument("--learning_rate", type=float,
                   help="peak learning rate of the pruning fine-tune, decayed linearly to 0 (default: the run's, halved for BERT, /5 for the BiLSTM)")
    p.add_argument("--distill_alpha", type=float, metavar="ALPHA",
                   help="the dense model teaches its pruned copy: ALPHA weighs the gold labels, 1 - ALPHA its soft targets "
                   "(e.g. 0.5; default: gold labels only)")
    p.add_argument("--temperature", type=float, default=2.0, help="softmax temperature of --distill_alpha's soft targets (default 2)")
    s = p.add_argument_group("structured compression (BERT classifiers; rows and columns removed, not zeroed)")
    s.add_argument("--trim_vocabulary", nargs="?", const="train", default=None, metavar="CORPUS",
                   help="keep only the WordPiece tokens that occur in the training texts (or in CORPUS: a .txt file, one text "
                   "per line, or a csv/tsv/jsonl table) plus the special tokens; gathers the embedding rows")
    s.add_argument("--keep_layers", type=_layer_list, metavar="I,J,...", help="keep these transformer blocks (e.g. 0,2,4), then fine-tune")
    s.add_argument("--prune_heads", type=_fraction, metavar="F", help="remove this fraction of attention heads (lowest importance first), then fine-tune")
    s.add_argument("--prune_ffn", type=_fraction, metavar="F", help="remove this fraction of feed-forward neurons (lowest importance first), then fine-tune")
    s.add_argument("--importance_batches", type=_positive_int, default=32,
                   help="training batches over which head / neuron importance is accumulated (default 32)")
    add_publish_flags(p, "variants", name_default="the run's name", unpublished="the variants stay staged in <report_dir>/variants/")
    p.add_argument("--publish", choices=("all", "compressed", "none"), default="all",
                   help="which variants within --max_drop become versions under --model_base_path: all (default; the one "
                   "labelled compressed last, so it is the highest version), compressed (only that one), none")
    p.add_argument("--tflite_only", action="store_true",
                   help="ignored (kept so old commands run): every version holds a SavedModel the stock server loads, "
                   "with model.tflite beside it for quantized variants")
    p.add_argument("--max_drop", type=_non_negative, default=0.01,
                   help="largest drop of the metric below the dense model's (absolute: 0.01 = 1 point) a variant may have to "
                   "be published or labelled compressed; variants beyond it stay staged (default 0.01)")
    p.add_argument("--max_eval_examples", type=int, default=2000, help="cap on validation examples used to score variants (default 2000)")
    p.add_argument("--report", action="store_true", help="print the report table (it is always saved, to --report_dir)")
    p.add_argument("--report_dir", help="where report.json, report.md, the staged variants and TensorBoard logs go (default: <run>/compression)")
    p.set_defaults(func=_cmd_compress)


def _cmd_compress(args) -> int:
    from llmos_tf.model_ref import resolve_model
    from llmos_tf.errors import RunError

    ref = resolve_model(args.run, flag="--run")  # before TensorFlow: a wrong path answers at once
    if ref.is_savedmodel:
        raise RunError(f"--run {args.run}: an exported version; compress takes the run folder it came from (runs/<name>)")
    from llmos_tf.compression.pipeline import compress
    from llmos_tf.compression.structured.steps import StructuredOptions
    from llmos_tf.export.writer import main_command

    structured = StructuredOptions(trim_vocabulary=args.trim_vocabulary, keep_layers=args.keep_layers, prune_heads=args.prune_heads,
                                   prune_ffn=args.prune_ffn, importance_batches=args.importance_batches)
    structured.check()  # a missing corpus file answers before the run loads

    quantize = tuple(m for m in args.quantize if m != "none")
    report = compress(
        args.run, prune=args.prune, target_sparsity=args.target_sparsity, structured_2_4=args.structured_2_4,
        prune_embeddings=args.prune_embeddings, quantize=quantize, qat=args.qat, epochs=args.epochs,
        steps_per_epoch=args.steps_per_epoch, learning_rate=args.learning_rate, distill_alpha=args.distill_alpha,
        temperature=args.temperature, model_base_path=args.model_base_path, name=args.name,
        publish=args.publish, tflite_only=args.tflite_only, max_drop=args.max_drop,
        max_eval_examples=args.max_eval_examples, report_dir=args.report_dir, command=main_command(), structured=structured,
        verbose=1 if sys.stdout.isatty() else 2,  # Keras' progress bar, or a line per fine-tuning epoch in a log
    )
    if args.report:
        print()
        print(report.to_text())  # ends with the publishing sentences
    published = [r for r in report.rows if r.version is not None]
    if published:
        print()
        print(f"published {len(published)} version(s) of {args.model_base_path}/{report.model_name}; serve them with:")
        print(f"  llmos serve --model_config_file {args.model_base_path}/models.config")
    return 0


def add_distill_parser(sub) -> None:
    p = add_command(
        sub,
        "distill",
        help="distil a teacher (e.g. a BERT run) into a student (e.g. a BiLSTM config)",
        description="Knowledge distillation as in Tang et al. 2019: the teacher labels the student's training texts "
        "(and, with --augment, masked / word-swapped / n-gram-sampled copies of them); the student learns from "
        "alpha * cross-entropy on the gold labels + (1 - alpha) * the distillation loss (KL on temperature-softened "
        "outputs, times T^2, or MSE between centred logits). The result is a normal run folder under the student "
        "config's output_dir; nothing is written to a model base path (publish it with llmos export --model_base_path).",
        examples="""\
            examples:
              llmos distill --teacher runs/sst2_bert --student configs/sst2_bilstm.yaml --set name=sst2_distilled
              llmos distill --teacher exports/sst2_bert/1 --student configs/sst2_bilstm.yaml --loss mse --alpha 0 --augment 2
                  (an exported version folder works as teacher too)
            then, as for any run (distill itself publishes nothing; export does, where you point it):
              llmos evaluate --model runs/sst2_distilled --data ../shared/data/sst2/dev.tsv
              llmos export --run runs/sst2_distilled --model_base_path saved_models --name sst2_bilstm_distilled --label distilled
            """,
    )
    p.add_argument("--teacher", required=True, metavar="RUN_OR_MODEL", help="a finished classifier run folder or an exported version folder")
    p.add_argument("--student", required=True, metavar="CONFIG", help="YAML config of the student (usually a BiLSTM; its data files are the transfer set)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE", help="override a student config value (repeatable)")
    p.add_argument("--loss", choices=("kl", "mse"), default="kl", help="distillation term: kl (soft targets, default) or mse (logits)")
    p.add_argument("--temperature", type=float, default=2.0, help="softmax temperature T for --loss kl (default 2)")
    p.add_argument("--alpha", type=float, default=0.5, help="weight of the gold-label cross-entropy; 1 - alpha goes to the teacher (default 0.5)")
    p.add_argument("--augment", type=int, default=0, metavar="COPIES", help="augmented copies per training text, labelled by the teacher only (default 0)")
    p.add_argument("--overwrite", action="store_true", help="replace a finished student run of the same name")
    p.set_defaults(func=_cmd_distill)


def _cmd_distill(args) -> int:
    from llmos_tf.model_ref import resolve_model
    from llmos_tf.config import load_config

    # before TensorFlow: a typo in the student config or a wrong teacher path answers at once
    cfg = load_config(args.student, args.overrides)
    teacher = resolve_model(args.teacher, flag="--teacher").path  # a model folder means its highest version
    from llmos_tf.compression.distillation import distill
    from llmos_tf.export.writer import main_command

    result = distill(teacher, cfg, loss=args.loss, temperature=args.temperature, alpha=args.alpha,
                     augment_copies=args.augment, overwrite=args.overwrite, command=main_command())
    val = result.metrics["validation"]
    info = result.info
    rows = [
        ("student run", str(result.run_dir)),
        ("teacher", info["distillation"]["teacher"]),
        ("loss", f"{args.loss} (T={args.temperature}, alpha={args.alpha})"),
        ("transfer set", f"{info['distillation']['transfer_examples']} ({info['distillation']['augmented_examples']} augmented)"),
        ("teacher val accuracy", f"{result.teacher_metrics['accuracy']:.4f}"),
        ("student val accuracy", f"{val['accuracy']:.4f}"),
        ("student parameters", f"{info['parameters']:,}"),
        ("wall time", f"{info['wall_time_seconds']} s"),
    ]
    print()
    width = max(len(k) for k, _ in rows)
    for key, value in rows:
        print(f"{key.ljust(width)}  {value}")
    return 0
