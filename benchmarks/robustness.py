"""Robustness and calibration of real models, measured in one run.

* ``robustness`` -- accuracy and flip rate on a labelled file under each seeded perturbation (typo,
  lowercase, punctuation, drop, embedding-space neighbour; ``--rate`` of the words), for run folders
  and exported versions alike (an export's neighbours come from ``--neighbours_from RUN``, the run
  sharing its vocabulary).
* ``calibration`` -- ECE (15 bins) before and after temperature scaling, cross-fitted: the validation
  logits are split in two seeded halves, T is fitted on one and ECE scored on the other (and back), so
  no example is scored by a temperature fitted on it. Run folders only (it needs logits).

Example (about 10 minutes of CPU)::

    python benchmarks/robustness.py --parts robustness --data ../shared/data/sst2/dev.tsv \\
        --model /work/scratch/runs/sst2_bilstm_distilled --model /work/scratch/runs/sst2_bert_900_pruned30 \\
        --model saved_models/sst2_bert/3 --neighbours_from /work/scratch/runs/sst2_bert_900_pruned30
    python benchmarks/robustness.py --parts calibration \\
        --model /work/scratch/runs/sst2_bert_900_pruned30 --model /work/scratch/runs/banking77_bert_pruned
"""
from __future__ import annotations

import argparse
import json
import pathlib
import time

import numpy as np

import llmos_tf  # noqa: F401  (selects tf_keras before TensorFlow loads)


def _model(path: str, neighbours_from: str | None):
    """(predict_proba, LabelMap, label_names, columns, neighbours) of a run folder or an exported version."""
    from llmos_tf.data.labels import LabelMap
    from llmos_tf.explain.robustness import EmbeddingNeighbours
    from llmos_tf.model_ref import resolve_model
    from llmos_tf.tasks.classification import TrainedRun

    ref = resolve_model(path)
    if ref.is_savedmodel:
        from llmos_tf.serving.local import LocalSavedModel

        model = LocalSavedModel.load(ref.path)
        neighbours = EmbeddingNeighbours.of_run(TrainedRun.load(neighbours_from)) if neighbours_from else None
        return model.predict_proba, LabelMap(model.label_names), model.card_label_names(), (None, None), neighbours
    run = TrainedRun.load(ref.path)
    d = run.config.data
    return run.predict_proba, run.labels, d.label_names, (d.text_column, d.label_column), EmbeddingNeighbours.of_run(run)


def robustness_part(args) -> list[dict]:
    from llmos_tf.data.readers import read_labelled_table
    from llmos_tf.explain.robustness import robustness_table

    out = []
    for path in args.model:
        predict_proba, labels, names, columns, neighbours = _model(path, args.neighbours_from)
        frame = read_labelled_table(args.data, *columns)
        if args.limit:
            frame = frame.iloc[: args.limit]
        y = np.asarray(labels.encode(frame["label"].tolist(), names=names or None))
        start = time.perf_counter()
        rows = robustness_table(predict_proba, frame["text"].tolist(), y, rate=args.rate, seed=args.seed, neighbours=neighbours)
        out.append({"model": path, "rows": rows, "seconds": round(time.perf_counter() - start, 1)})
        print(json.dumps(out[-1]), flush=True)
    kinds = [row["perturbation"] for row in out[0]["rows"]] if out else []
    print(f"\nrobustness on {args.data} ({len(frame)} texts, rate {args.rate}, seed {args.seed}): accuracy (flip rate)")
    print(f"{'model':<36} " + " ".join(f"{k:>16}" for k in kinds))
    for item in out:
        cells = [("n/a" if r["accuracy"] is None else f"{r['accuracy']:.4f} ({r['flip_rate']:.3f})") for r in item["rows"]]
        print(f"{item['model'].rstrip('/').split('/')[-1] if 'saved_models' not in item['model'] else item['model']:<36} "
              + " ".join(f"{c:>16}" for c in cells))
    return out


def calibration_part(args) -> list[dict]:
    from llmos_tf.explain.calibrate_run import validation_logits
    from llmos_tf.metrics.calibration import expected_calibration_error, fit_temperature, softmax
    from llmos_tf.tasks.classification import TrainedRun

    out = []
    for path in args.model:
        run = TrainedRun.load(path)
        logits, labels = validation_logits(run)
        rng = np.random.default_rng(args.seed)
        half = rng.permutation(len(labels)) < len(labels) // 2
        after_probs = np.empty_like(logits)
        temps = []
        for fit, score in ((half, ~half), (~half, half)):
            t = fit_temperature(logits[fit], labels[fit])
            temps.append(t)
            after_probs[score] = softmax(logits[score], t)
        row = {"model": path, "examples": int(len(labels)), "accuracy": float((logits.argmax(1) == labels).mean()),
               "ece_before": expected_calibration_error(softmax(logits), labels), "ece_after": expected_calibration_error(after_probs, labels),
               "temperatures": [round(t, 4) for t in temps], "temperature_all": fit_temperature(logits, labels)}
        out.append(row)
        print(json.dumps(row), flush=True)
    print("\ncalibration on each run's validation split (15 bins; T cross-fitted on seeded halves)")
    print(f"{'run':<32} {'examples':>8} {'accuracy':>8} {'ECE before':>10} {'ECE after':>9}  T (half 1, half 2; all)")
    for r in out:
        print(f"{pathlib.Path(r['model']).name:<32} {r['examples']:>8} {r['accuracy']:>8.4f} {r['ece_before']:>10.4f} {r['ece_after']:>9.4f}"
              f"  {r['temperatures'][0]:.3f}, {r['temperatures'][1]:.3f}; {r['temperature_all']:.3f}")
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--parts", nargs="+", default=["robustness", "calibration"], choices=["robustness", "calibration"])
    parser.add_argument("--model", action="append", required=True, help="run folder or exported version (repeat)")
    parser.add_argument("--data", help="labelled file for the robustness part")
    parser.add_argument("--limit", type=int, default=0, help="first N texts (0: all)")
    parser.add_argument("--rate", type=float, default=0.15)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--neighbours_from", help="run folder whose embedding table gives an export's neighbour swaps")
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args(argv)
    results = {}
    if "robustness" in args.parts:
        if not args.data:
            parser.error("--data is needed for the robustness part")
        results["robustness"] = robustness_part(args)
    if "calibration" in args.parts:
        results["calibration"] = calibration_part(args)
    if args.json:
        pathlib.Path(args.json).write_text(json.dumps(results, indent=2), encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
