"""Rebuild TFLite-only versions as SavedModels the stock ``tensorflow_model_server`` serves.

Versions published with the old ``--tflite_only`` flag hold their weights only in
``model.tflite`` (their SavedModel has just ``preprocess``/``postprocess``, no
``serving_default``). For each such version under ``--model_base_path`` this:

1. recovers a run folder from the TFLite weights (``llmos_tf.compression.recovery``;
   the config comes from the model card's training command, read from ``configs/``);
2. exports it again with int8 weights inside the SavedModel (``export_model(weights="int8")``)
   under the same name, version and labels, keeping the model card's history;
3. scores the new ``serving_default`` and the old TFLite model on the run's validation data
   (when the data files are there) and prints a table.

``--compact_float NAME/VERSION`` also re-exports float versions of runs trained from scratch
without the Keras object graph in ``saved_model.pb`` (same weights, same answers; the BiLSTM
baseline's folder goes from 7.4 to 2.9 MB): ``recover_float_run`` learns the vocabulary again
and checks the rebuilt model answers exactly as before.

``--keep_tflite NAME/VERSION`` keeps ``model.tflite`` beside the SavedModel for those versions
(for ``--prefer_tflite_model``); the others drop it, which halves their size. ::

    .venv/bin/python scripts/rebuild_reference_versions.py --model_base_path saved_models \\
        --keep_tflite sst2_bert/3 --embedding_bits 4 --compact_float banking77_bilstm/1

``--from_run RUN=NAME/VERSION`` publishes a finished run the same way (int8 weights, ``--embedding_bits``,
``--lstm_matmul_dtype``); ``sst2_bilstm_distilled/2``, the 1 x BiLSTM-128 student, was made so::

    .venv/bin/python scripts/rebuild_reference_versions.py --model_base_path saved_models --only none \\
        --embedding_bits 4 --lstm_matmul_dtype bfloat16 --from_run runs/sst2_bilstm_small=sst2_bilstm_distilled/2

``--from_base DIR`` reads the TFLite-only versions from another base (e.g. an older
commit's ``saved_models`` checked out with ``git archive``) and ``--rename OLD=NEW``
publishes one under another name/version; labels of a version whose config now has
``data.label_names`` become the names. The SST-2 versions were rebuilt that way, the
distilled BiLSTM moving from ``sst2_bert/2`` to ``sst2_bilstm_distilled/1``::

    git archive aab3030^ saved_models/sst2_bert | tar -x -C /tmp/old
    .venv/bin/python scripts/rebuild_reference_versions.py --model_base_path saved_models \\
        --from_base /tmp/old/saved_models --embedding_bits 4 --keep_tflite sst2_bert/3 \\
        --rename sst2_bert/2=sst2_bilstm_distilled/1 --lstm_matmul_dtype bfloat16
"""
from __future__ import annotations

import argparse
import json
import pathlib
import shutil
import sys
import tempfile

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))


def tflite_only_versions(base: pathlib.Path) -> list[pathlib.Path]:
    from llmos_tf.serving.servable import read_signature_defs

    found = []
    for version in sorted(base.glob("*/[0-9]*")):
        if (version / "model.tflite").is_file() and "serving_default" not in read_signature_defs(version):
            found.append(version)
    return found


def _renamed(predict, version_dir: pathlib.Path, run):
    """The old version's answers in the rebuilt run's label names (a version from before ``data.label_names``)."""
    labels_file = version_dir / "assets" / "labels.txt"
    if not labels_file.is_file():  # a tagger: its tags are in the graph
        return predict
    old = [line for line in labels_file.read_text(encoding="utf-8").splitlines() if line]
    names = dict(zip(old, getattr(getattr(run, "labels", None), "names", old)))

    def answer(texts):
        out = dict(predict(texts))
        if "label" in out:
            out["label"] = [names.get(x.decode("utf-8") if isinstance(x, bytes) else str(x), x) for x in out["label"]]
        return out

    return answer


def folder_mb(path: pathlib.Path, exclude: tuple[str, ...] = ()) -> float:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file() and f.name not in exclude) / 1e6


def publish_run(run_dir: str, key: str, base: pathlib.Path, work: pathlib.Path, args: argparse.Namespace) -> dict:
    """Export a finished run with int8 weights into ``base/key`` (staged, then renamed in); its table row."""
    from llmos_tf.compression.pipeline import _serving_function, score, validation_set
    from llmos_tf.compression.run_data import load_trained
    from llmos_tf.export.layout import staged_version
    from llmos_tf.export.writer import export_model

    target = base / key
    run = load_trained(run_dir)
    staging = work / "export"
    shutil.rmtree(staging, ignore_errors=True)
    metric = json.loads((pathlib.Path(run_dir) / "run.json").read_text(encoding="utf-8")).get("metrics", {}).get("validation", {}).get("accuracy")
    staged = export_model(run, run.model, staging, target.parent.name, version=int(target.name), weights="int8",
                          compression={"method": "int8 weights", "savedmodel_weights": "int8", "from_run": str(run_dir)},
                          embedding_bits=args.embedding_bits, lstm_matmul_dtype=args.lstm_matmul_dtype,
                          command="python scripts/rebuild_reference_versions.py " + " ".join(sys.argv[1:]))
    row = {"version": key, "card": metric, "tflite": None, "savedmodel": None}
    if not args.no_score:
        row["savedmodel"] = score(False, _serving_function(staged, tflite=False), validation_set(run))
    target.parent.mkdir(parents=True, exist_ok=True)
    with staged_version(target.parent, target, force=True) as tmp:
        shutil.copytree(staged, tmp, dirs_exist_ok=True)
    row["mb"] = folder_mb(target)
    print(f"{key}: published from {run_dir} ({row['mb']:.1f} MB)", flush=True)
    return row


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model_base_path", default="saved_models")
    parser.add_argument("--keep_tflite", nargs="*", default=[], metavar="NAME/VERSION")
    parser.add_argument("--compact_float", nargs="*", default=[], metavar="NAME/VERSION",
                        help="float versions to re-export without the Keras object graph")
    parser.add_argument("--embedding_bits", type=int, choices=(8, 4), default=8,
                        help="bits per value of vocabulary tables in the SavedModel (4: a float16 scale per 64 values)")
    parser.add_argument("--only", nargs="*", default=None, metavar="NAME/VERSION", help="rebuild just these")
    parser.add_argument("--from_base", help="read TFLite-only versions from this base (default: --model_base_path)")
    parser.add_argument("--rename", nargs="*", default=[], metavar="OLD=NEW",
                        help="publish NAME/VERSION OLD as NAME/VERSION NEW (e.g. sst2_bert/2=sst2_bilstm_distilled/1)")
    parser.add_argument("--lstm_matmul_dtype", choices=("float32", "bfloat16"), default="float32",
                        help="matmul precision of the fused BiLSTM graph (bfloat16: for CPUs with AVX512-BF16/AMX)")
    parser.add_argument("--work_dir", help="where recovered run folders go (default: a temporary folder)")
    parser.add_argument("--no_score", action="store_true", help="skip scoring on the validation data")
    parser.add_argument("--from_run", nargs="*", default=[], metavar="RUN=NAME/VERSION",
                        help="also publish finished runs (e.g. a distilled student) as int8 SavedModels at NAME/VERSION, "
                             "with --embedding_bits and --lstm_matmul_dtype, the way the rebuilt references are made")
    args = parser.parse_args(argv)

    from llmos_tf.compression.pipeline import _serving_function, score, validation_set
    from llmos_tf.compression.run_data import load_trained
    from llmos_tf.compression.recovery import recover_float_run, recover_run
    from llmos_tf.export.layout import staged_version
    from llmos_tf.export.writer import TFLITE_FILE, export_model
    from llmos_tf.tasks.tagging import TrainedTagger

    base = pathlib.Path(args.model_base_path)
    source = pathlib.Path(args.from_base or base)
    renames = dict(item.split("=", 1) for item in args.rename)
    work = pathlib.Path(args.work_dir or tempfile.mkdtemp(prefix="llmos-rebuild-"))
    rows = []
    todo = [(v, True) for v in tflite_only_versions(source)] + [(base / key, False) for key in args.compact_float]
    for version_dir, from_tflite in todo:
        key = f"{version_dir.parent.name}/{version_dir.name}"
        if args.only is not None and key not in args.only:
            continue
        target = base / renames.get(key, key)
        print(f"{key}: recovering the run from {TFLITE_FILE if from_tflite else 'the SavedModel'} ...", flush=True)
        run_dir = work / key.replace("/", "_")
        facts = recover_run(version_dir, run_dir) if from_tflite else recover_float_run(version_dir, run_dir)
        run = load_trained(run_dir)
        old_card = json.loads((version_dir / "assets" / "llmos.json").read_text(encoding="utf-8"))
        staging = work / "export"
        shutil.rmtree(staging, ignore_errors=True)
        weights = "int8" if from_tflite else "float32"
        compression = {**old_card.get("compression", {}), "savedmodel_weights": weights} if from_tflite else old_card.get("compression")
        tflite = (version_dir / TFLITE_FILE).read_bytes() if from_tflite and key in args.keep_tflite else None
        staged = export_model(run, run.model, staging, target.parent.name, version=int(target.name),
                              compression=compression, tflite=tflite, weights=weights,
                              embedding_bits=args.embedding_bits if from_tflite else 8,
                              lstm_matmul_dtype=args.lstm_matmul_dtype, command="python scripts/rebuild_reference_versions.py " + " ".join(sys.argv[1:]))
        card = json.loads((staged / "assets" / "llmos.json").read_text(encoding="utf-8"))
        for field in ("training_command", "export_command", "run", "created_at", "version_labels", "metrics", "data",
                      "data_fingerprint", "parameters"):
            if field in old_card:
                card[field] = old_card[field]
        if target != version_dir:
            card["renamed_from"] = key
        card["rebuilt"] = {"from": "model.tflite of the TFLite-only version" if from_tflite else "the version's own SavedModel",
                           "command": card.pop("export_command", None), **facts, "tflite_kept": tflite is not None}
        card["export_command"] = old_card.get("export_command")
        row = {"version": key, "card": None, "tflite": None, "savedmodel": None}
        if not args.no_score:
            try:
                data = validation_set(run)
                tagger = isinstance(run, TrainedTagger)
                metric = "entity_f1" if tagger else "accuracy"
                row["card"] = old_card.get("metrics", {}).get("validation", {}).get(metric)
                row["tflite"] = score(tagger, _renamed(_serving_function(version_dir, tflite=True), version_dir, run),
                                      data) if from_tflite else None
                row["savedmodel"] = score(tagger, _serving_function(staged, tflite=False), data)
                card["rebuilt"].update({"metric": metric, "examples": len(data.texts), "tflite_metric": row["tflite"],
                                        "savedmodel_metric": row["savedmodel"]})
                if not from_tflite:
                    card["rebuilt"]["before_metric"] = score(tagger, _serving_function(version_dir, tflite=False), data)
            except Exception as err:  # data files absent on this machine: rebuild without scores
                print(f"{key}: not scored ({err})", file=sys.stderr)
        (staged / "assets" / "llmos.json").write_text(json.dumps(card, indent=2, default=str) + "\n", encoding="utf-8")
        target.parent.mkdir(parents=True, exist_ok=True)
        with staged_version(target.parent, target, force=True) as tmp:
            shutil.copytree(staged, tmp, dirs_exist_ok=True)
        if target != version_dir and version_dir.is_relative_to(base):
            shutil.rmtree(version_dir)  # moved: the old name/version is gone from the base
        row["version"] = renames.get(key, key)
        row["mb"] = folder_mb(target)
        rows.append(row)
        print(f"{row['version']}: rebuilt from {key} ({row['mb']:.1f} MB)", flush=True)
    for item in args.from_run:
        rows.append(publish_run(*item.split("=", 1), base, work, args))
    print(f"\n{'version':18s} {'card':>7s} {'tflite':>7s} {'savedmodel':>10s} {'MB':>6s}")
    for r in rows:
        fmt = lambda v: f"{v:.4f}" if isinstance(v, float) else "-"  # noqa: E731
        print(f"{r['version']:18s} {fmt(r['card']):>7s} {fmt(r['tflite']):>7s} {fmt(r['savedmodel']):>10s} {r['mb']:6.1f}")
    print(f"{base}: {folder_mb(base):.1f} MB in all")
    return 0


if __name__ == "__main__":
    sys.exit(main())
