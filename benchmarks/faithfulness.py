"""Faithfulness of integrated gradients on real data: the deletion test and ERASER AOPC, attributed vs random.

For each run and each of the first ``--limit`` texts of a labelled file (SST-2 dev by default): remove
the k = 1..5 words with the highest attribution for the predicted class, and k random words (seeded);
the drop in that class's probability, averaged over k, is the AOPC (comprehensiveness). Prints one
table row per run: AOPC attributed, AOPC random, their ratio, and the mean drop at each k.

Example (BiLSTM about 1 minute, MiniLM BERT about 10 minutes of CPU at --limit 300)::

    python benchmarks/faithfulness.py --data ../shared/data/sst2/dev.tsv --limit 300 \\
        --run /work/scratch/runs/sst2_bilstm_distilled --run /work/scratch/runs/sst2_bert_900_pruned30 --json out.json
"""
from __future__ import annotations

import argparse
import json
import time

import llmos_tf  # noqa: F401  (selects tf_keras before TensorFlow loads)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", action="append", required=True, help="classification run folder (repeat for several)")
    parser.add_argument("--data", required=True, help="labelled file (its text column is read; labels are not needed)")
    parser.add_argument("--limit", type=int, default=300, help="first N texts")
    parser.add_argument("--k_max", type=int, default=5)
    parser.add_argument("--steps", type=int, default=32, help="integrated-gradients steps")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args(argv)

    from llmos_tf.data.readers import read_labelled_table
    from llmos_tf.explain.faithfulness import deletion_test
    from llmos_tf.tasks.classification import TrainedRun

    results = []
    for run_dir in args.run:
        run = TrainedRun.load(run_dir)
        d = run.config.data
        texts = read_labelled_table(args.data, d.text_column, d.label_column)["text"].tolist()[: args.limit]
        start = time.perf_counter()
        result = deletion_test(run, texts, k_max=args.k_max, seed=args.seed, steps=args.steps)
        result.update(run=str(run_dir), seconds=round(time.perf_counter() - start, 1))
        results.append(result)
        print(json.dumps(result), flush=True)
    print(f"\ndeletion test on {args.data} (first {args.limit} texts, k = 1..{args.k_max} words, IG steps {args.steps}, seed {args.seed})")
    print(f"{'run':<42} {'texts':>5} {'AOPC IG':>8} {'AOPC random':>11} {'ratio':>6}   drop at k (IG | random)")
    for r in results:
        name = r["run"].rstrip("/").split("/")[-1]
        curve = " ".join(f"{a:.3f}" for a in r["drop_at_k_attributed"]) + " | " + " ".join(f"{b:.3f}" for b in r["drop_at_k_random"])
        print(f"{name:<42} {r['texts']:>5} {r['aopc_attributed']:>8.4f} {r['aopc_random']:>11.4f} {r['aopc_ratio']:>6.2f}   {curve}")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as handle:
            json.dump(results, handle, indent=2)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
