"""Composed servables on real data, measured in one run: ensemble accuracy, k-NN retrieval, search latency.

Three parts (``--parts``), each printing a table:

* ``ensemble`` -- SST-2 dev accuracy of each member (through its own ``serving_default``) and of the
  ensemble: the equal-weight average (the SavedModel ``llmos ensemble`` writes, evaluated through its
  own ``serving_default``) and stacking, scored by 2-fold cross-fitting on dev (the logistic regression is
  fitted on one half and scored on the other, so no example is scored by a combiner fitted on it).
* ``retrieval`` -- Banking77 as retrieval: the validation split the fine-tuned model was validated on
  (stratified, seed 42, 10% of train.csv, as ``data.validation_fraction: 0.1`` carved it) are the queries,
  the rest of train.csv the neighbours; k-NN intent accuracy (k=1: the nearest row's intent; k=5: majority
  of the 5 nearest, ties by summed similarity) with the off-the-shelf MiniLM and with the fine-tuned
  Banking77 encoder (the ``encode`` signature of its export; a run folder is exported first, with int8
  weights as ``saved_models/banking77_bert/1`` was), next to the fine-tuned classifier's own accuracy.
* ``latency`` -- the ``search`` signature of an index over synthetic unit vectors (corpus sizes ``--sizes``),
  batch 1, k=10: p50/p99 end to end (MiniLM query encoding + matmul + top_k) and of the matrix part alone,
  float32 and int8 matrices.

Example (about 10 minutes of CPU)::

    python benchmarks/compose.py --sst2 ../shared/data/sst2/dev.tsv --banking77 ../shared/data/banking77/train.csv \\
        --finetuned runs/banking77_bert --out_dir /tmp/compose_bench
"""
from __future__ import annotations

import argparse
import json
import pathlib
import time

import numpy as np

import llmos_tf  # noqa: F401  (selects tf_keras before TensorFlow loads)


def _ms(samples: list[float]) -> tuple[float, float]:
    return float(np.percentile(samples, 50) * 1e3), float(np.percentile(samples, 99) * 1e3)


def ensemble_part(args, out_dir: pathlib.Path) -> dict:
    from llmos_tf._tf import tf
    from llmos_tf.compose.common import batched, load_version
    from llmos_tf.compose.ensemble import build_ensemble, fit_stacking
    from llmos_tf.compose.plan import plan_ensemble

    plan = plan_ensemble(args.members, validation=args.sst2)
    texts, labels = list(plan.validation["text"]), plan.labels
    y = np.array([labels.index(v) for v in plan.validation["label"]])
    probs = []
    rows = []
    for ref, order in zip(plan.members, plan.orders):
        member = load_version(ref)
        p = batched(member.signatures["serving_default"], texts, "probabilities")[:, order]
        probs.append(p)
        rows.append((ref.spec, float((p.argmax(1) == y).mean())))
    path = build_ensemble(args.members, out_dir / "models", "sst2_ensemble", force=True, version=1, command="benchmarks/compose.py")
    served = batched(tf.saved_model.load(str(path)).signatures["serving_default"], texts, "probabilities")
    average = np.mean(probs, axis=0)
    assert np.allclose(served, average, atol=1e-5), np.abs(served - average).max()
    rows.append(("ensemble: equal-weight average (its SavedModel)", float((served.argmax(1) == y).mean())))
    features = np.concatenate(probs, axis=1)
    rng = np.random.default_rng(0)
    fold = rng.permutation(len(y)) % 2
    stacked = np.empty_like(average)
    for f in (0, 1):
        kernel, bias = fit_stacking(features[fold != f], y[fold != f], len(labels))
        logits = features[fold == f] @ kernel + bias
        stacked[fold == f] = np.exp(logits - logits.max(1, keepdims=True)) / np.exp(logits - logits.max(1, keepdims=True)).sum(1, keepdims=True)
    rows.append(("ensemble: stacking (2-fold cross-fitted on dev)", float((stacked.argmax(1) == y).mean())))
    best = max(r[1] for r in rows[:len(plan.members)])
    print(f"\nSST-2 dev ({len(y)} sentences)\n| model | accuracy | vs best member |\n|---|---|---|")
    for name, acc in rows:
        print(f"| {name} | {acc:.4f} | {acc - best:+.4f} |")
    return {"sst2_dev": dict(rows), "examples": int(len(y))}


def _knn_accuracy(queries: np.ndarray, corpus: np.ndarray, query_y: np.ndarray, corpus_y: np.ndarray, k: int) -> float:
    scores = queries @ corpus.T
    top = np.argsort(-scores, axis=1)[:, :k]
    correct = 0
    for row, neighbours in enumerate(top):
        votes: dict[int, list[float]] = {}
        for n in neighbours:
            votes.setdefault(int(corpus_y[n]), []).append(float(scores[row, n]))
        winner = max(votes, key=lambda c: (len(votes[c]), sum(votes[c])))
        correct += winner == query_y[row]
    return correct / len(query_y)


def retrieval_part(args, out_dir: pathlib.Path) -> dict:
    from llmos_tf.compose.common import batched, load_version
    from llmos_tf.compose.embeddings import load_encoder
    from llmos_tf.compose.refs import resolve_version
    from llmos_tf.data.readers import read_labelled_table
    from llmos_tf.data.splits import stratified_split

    finetuned = args.finetuned
    if (pathlib.Path(finetuned) / "run.json").is_file():  # a run folder: export it with `encode`, int8 like the committed version
        from llmos_tf.export.writer import export_model
        from llmos_tf.tasks.classification import TrainedRun

        finetuned = str(export_model(TrainedRun.load(finetuned), None, out_dir / "models", "banking77_bert", weights="int8", embedding_bits=4,
                                     version=1, force=True, command="benchmarks/compose.py"))
    frame = read_labelled_table(args.banking77, "text", "category")
    neighbours, queries = stratified_split(frame, 0.1, seed=42)
    classes = sorted(set(frame["label"]))
    qy = np.array([classes.index(v) for v in queries["label"]])
    ny = np.array([classes.index(v) for v in neighbours["label"]])
    results = {}
    for label, spec in (("MiniLM-L6 off the shelf (minilm-l6)", "minilm-l6"), ("Banking77 fine-tuned encoder", finetuned)):
        started = time.perf_counter()
        encoder = load_encoder(spec)
        q = encoder.encode(list(queries["text"]))
        n = encoder.encode(list(neighbours["text"]))
        seconds = time.perf_counter() - started
        results[label] = {k: _knn_accuracy(q, n, qy, ny, k) for k in (1, 5)} | {"encode_seconds": seconds}
    ref = resolve_version(finetuned, flag="--finetuned")
    classifier = load_version(ref)
    names = ref.labels
    probs = batched(classifier.signatures["serving_default"], list(queries["text"]), "probabilities")
    predicted = np.array([classes.index(names[i]) for i in probs.argmax(1)])
    results["fine-tuned classifier (serving_default)"] = {"classifier": float((predicted == qy).mean())}
    print(f"\nBanking77 retrieval: {len(qy)} queries (validation split, seed 42), {len(ny)} neighbours (rest of train.csv)")
    print("| encoder | k-NN accuracy k=1 | k-NN accuracy k=5 | classifier accuracy |\n|---|---|---|---|")
    for name, r in results.items():
        cells = [f"{r[k]:.4f}" if k in r else "" for k in (1, 5, "classifier")]
        print(f"| {name} | " + " | ".join(cells) + " |")
    return {"banking77": {name: {str(k): v for k, v in r.items()} for name, r in results.items()}, "queries": int(len(qy)), "neighbours": int(len(ny))}


def latency_part(args, out_dir: pathlib.Path) -> dict:
    from llmos_tf._tf import tf
    from llmos_tf.compose.embeddings import load_encoder
    from llmos_tf.compose.search_index import SearchModule

    encoder = load_encoder(args.encoder)
    dim = encoder.dim
    rng = np.random.default_rng(0)
    query, k = tf.constant(["how do i freeze a stolen card"]), tf.constant([10], tf.int32)
    rows = []
    for size in args.sizes:
        vectors = rng.standard_normal((size, dim)).astype(np.float32)
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
        texts = [f"synthetic row {i}" for i in range(size)]
        for dtype in ("float32", "int8"):
            module = SearchModule(encoder, vectors, texts, dtype=dtype)
            qv = tf.constant(encoder.encode(["how do i freeze a stolen card"]))
            matrix_only = tf.function(lambda v: tf.math.top_k(module.scores(v), k=10))
            for _ in range(5):
                module.search(query, k)
                matrix_only(qv)
            end_to_end, matrix = [], []
            for _ in range(args.repeats):
                started = time.perf_counter()
                module.search(query, k)["ids"].numpy()
                end_to_end.append(time.perf_counter() - started)
                started = time.perf_counter()
                matrix_only(qv).indices.numpy()
                matrix.append(time.perf_counter() - started)
            rows.append({"rows": size, "dtype": dtype, "search_p50_ms": _ms(end_to_end)[0], "search_p99_ms": _ms(end_to_end)[1],
                         "matrix_p50_ms": _ms(matrix)[0], "matrix_p99_ms": _ms(matrix)[1], "matrix_mb": size * dim * (4 if dtype == "float32" else 1) / 1e6})
            del module
    print(f"\nsearch latency, batch 1, k=10, {args.repeats} queries each (in-process `search` signature; {dim}-d synthetic unit rows)")
    print("| corpus rows | matrix | MB | search p50 ms | search p99 ms | matmul+top_k p50 ms | matmul+top_k p99 ms |\n|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['rows']:,} | {r['dtype']} | {r['matrix_mb']:.0f} | {r['search_p50_ms']:.1f} | {r['search_p99_ms']:.1f} | {r['matrix_p50_ms']:.1f} | {r['matrix_p99_ms']:.1f} |")
    return {"latency": rows}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--parts", nargs="+", default=["ensemble", "retrieval", "latency"], choices=("ensemble", "retrieval", "latency"))
    parser.add_argument("--sst2", help="SST-2 dev.tsv")
    parser.add_argument("--members", nargs="+", default=["saved_models/sst2_bert@compressed", "saved_models/sst2_bilstm_distilled/1"])
    parser.add_argument("--banking77", help="Banking77 train.csv (text,category)")
    parser.add_argument("--finetuned", help="a Banking77 BERT classifier: a version with an `encode` signature, or its run folder (exported here, int8)")
    parser.add_argument("--encoder", default="minilm-l6", help="query encoder of the latency part (an encoder spec or a published encoder)")
    parser.add_argument("--sizes", nargs="+", type=int, default=[10_000, 30_000, 100_000, 200_000])
    parser.add_argument("--repeats", type=int, default=200)
    parser.add_argument("--out_dir", required=True)
    args = parser.parse_args()
    out_dir = pathlib.Path(args.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    results = {}
    for part in args.parts:
        results.update({"ensemble": ensemble_part, "retrieval": retrieval_part, "latency": latency_part}[part](args, out_dir))
        (out_dir / "results.json").write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
