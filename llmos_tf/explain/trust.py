"""What ``llmos evaluate`` adds: calibration (ECE, reliability diagram) for a sentence classifier and, with
``--robustness``, accuracy (classifiers) or entity F1 (NER taggers) and the flip rate under seeded perturbations.

The evaluate command hands the data it read to :func:`evaluate_classifier` / :func:`evaluate_tagger`, which
load the model once and **predict the data once**: the same probabilities (tags) give the metrics table, the
ECE and the robustness table's clean row. For a run folder, the diagram and the robustness table also go to
TensorBoard (``<run>/evaluation``: an image, an ECE scalar and a text summary).
"""
from __future__ import annotations

import pathlib
from typing import Any

import numpy as np

from llmos_tf.metrics.calibration import ECE_BINS, expected_calibration_error, reliability_figure


def add_trust_arguments(parser) -> None:
    parser.add_argument("--robustness", action="store_true",
                        help="also score seeded perturbations of the data (typo, lowercase, punctuation, drop, neighbour): "
                        "accuracy (classifiers) or entity F1 (NER taggers) and the flip rate per perturbation")
    parser.add_argument("--perturbation_rate", type=float, default=0.15, metavar="RATE",
                        help="share of words a typo / drop / neighbour perturbation touches")
    parser.add_argument("--seed", type=int, default=0, help="seed of the perturbations (same seed, same perturbed texts)")
    parser.add_argument("--reliability_png", metavar="FILE",
                        help="write the reliability diagram here (default for a run: <run>/evaluation/reliability_<data>.png)")


class _Classifier:
    """predict_proba, labels and defaults of a run or an exported version."""

    def __init__(self, ref):
        from llmos_tf.data.labels import LabelMap

        self.neighbours = None
        self.run_dir = None
        if ref.is_savedmodel:
            from llmos_tf.serving.local import LocalSavedModel

            model = LocalSavedModel.load(ref.path)
            self.predict_proba = model.predict_proba
            self.labels = LabelMap(model.label_names)
            self.names = model.card_label_names()
            self.columns = (None, None)
            source = model.servable.card.get("run")  # the run it came from: its embedding table gives neighbours
            self._neighbour_run = source if source and (pathlib.Path(source) / "run.json").is_file() else None
        else:
            from llmos_tf.tasks.classification import TrainedRun

            run = TrainedRun.load(ref.path)
            self.predict_proba = run.predict_proba
            self.labels, self.names = run.labels, run.config.data.label_names
            self.columns = (run.config.data.text_column, run.config.data.label_column)
            self.run_dir = pathlib.Path(ref.path)
            self._run = run
            self._neighbour_run = None

    def embedding_neighbours(self):
        from llmos_tf.explain.robustness import EmbeddingNeighbours

        if self.run_dir is not None:
            return EmbeddingNeighbours.of_run(self._run)
        if self._neighbour_run is not None:
            from llmos_tf.tasks.classification import TrainedRun

            return EmbeddingNeighbours.of_run(TrainedRun.load(self._neighbour_run))
        return None


def _check_rate(args) -> None:
    if getattr(args, "robustness", False) and not 0 < args.perturbation_rate <= 1:
        from llmos_tf.errors import ConfigError

        raise ConfigError(f"--perturbation_rate {args.perturbation_rate}: expected a rate in (0, 1]")


def evaluate_classifier(args, ref, frame) -> dict[str, Any]:
    """Classifier metrics, ``ece`` (15 bins), ``reliability_diagram`` and, with ``--robustness``, ``robustness`` rows,
    from one prediction of ``frame`` (a :func:`~llmos_tf.data.readers.read_labelled_table` frame)."""
    from llmos_tf.errors import DataError
    from llmos_tf.training.evaluation import classification_metrics

    _check_rate(args)
    if not len(frame):
        raise DataError(f"{frame.attrs.get('path', args.data)}: no examples")
    model = _Classifier(ref)
    y_true = np.asarray(model.labels.encode(frame["label"].tolist(), path=frame.attrs.get("path"), lines=frame["line"].tolist(),
                                            names=model.names or None))
    texts = frame["text"].tolist()
    probs = model.predict_proba(texts)
    metrics = classification_metrics(y_true, probs.argmax(axis=-1), model.labels.names)
    metrics = dict(metrics, ece=expected_calibration_error(probs, y_true, ECE_BINS), ece_bins=ECE_BINS)
    png = pathlib.Path(args.reliability_png) if args.reliability_png else None
    if png is None and model.run_dir is not None:
        png = model.run_dir / "evaluation" / f"reliability_{pathlib.Path(args.data).stem}.png"
    figure = reliability_figure(probs, y_true, ECE_BINS, title=f"{pathlib.Path(str(args.model)).name} on {pathlib.Path(args.data).name}")
    from llmos_tf.training.evaluation import figure_to_png

    image = figure_to_png(figure)
    if png is not None:
        png.parent.mkdir(parents=True, exist_ok=True)
        png.write_bytes(image)
        metrics["reliability_diagram"] = str(png)
    if getattr(args, "robustness", False):
        from llmos_tf.explain.robustness import robustness_table

        metrics["robustness"] = robustness_table(model.predict_proba, texts, y_true, rate=args.perturbation_rate, seed=args.seed,
                                                 neighbours=model.embedding_neighbours(), clean_probabilities=probs)
        metrics["robustness_settings"] = {"rate": args.perturbation_rate, "seed": args.seed}
    if model.run_dir is not None:
        _to_tensorboard(model.run_dir / "evaluation", pathlib.Path(args.data).stem, image, metrics)
    return metrics


def evaluate_tagger(args, ref, frame) -> dict[str, Any]:
    """conlleval metrics of an NER run or export on a CoNLL ``frame`` and, with ``--robustness``, entity F1 and the
    flip rate per perturbation (``robustness`` rows), from one prediction of the clean sentences."""
    from llmos_tf.metrics.conlleval import conlleval

    _check_rate(args)
    tokens, gold = frame["tokens"].tolist(), frame["tags"].tolist()
    neighbour_run = None
    if ref.is_savedmodel:
        from llmos_tf.serving.local import LocalSavedModel

        model = LocalSavedModel.load(ref.path, getattr(args, "head", None))
        predict_tags, run_dir = model._tags, None
        source = model.servable.card.get("run")  # the run it came from: its embedding table gives neighbours
        if source and (pathlib.Path(source) / "run.json").is_file():
            neighbour_run = source
    else:
        from llmos_tf.tasks.tagging import TrainedTagger

        tagger = TrainedTagger.load(ref.path)
        predict_tags = lambda words: tagger.predictor.predict_tags(words, tagger.labels.names)  # noqa: E731
        run_dir, neighbour_run = pathlib.Path(ref.path), tagger
    clean = predict_tags(tokens) if tokens else []
    metrics: dict[str, Any] = {"examples": len(frame), **conlleval(gold, clean)}
    if getattr(args, "robustness", False):
        from llmos_tf.explain.robustness import EmbeddingNeighbours, entity_robustness_table

        neighbours = None
        if neighbour_run is not None:
            from llmos_tf.tasks.tagging import TrainedTagger, is_tagger_run

            if not isinstance(neighbour_run, TrainedTagger) and is_tagger_run(neighbour_run):
                neighbour_run = TrainedTagger.load(neighbour_run)
            if isinstance(neighbour_run, TrainedTagger):
                neighbours = EmbeddingNeighbours.of_run(neighbour_run)
        metrics["robustness"] = entity_robustness_table(predict_tags, tokens, gold, rate=args.perturbation_rate, seed=args.seed,
                                                        neighbours=neighbours, clean=clean)
        metrics["robustness_settings"] = {"rate": args.perturbation_rate, "seed": args.seed}
        if run_dir is not None:
            _to_tensorboard(run_dir / "evaluation", pathlib.Path(args.data).stem, None, metrics)
    return metrics


def robustness_markdown(rows: list[dict[str, Any]]) -> str:
    """The robustness rows as a markdown table (TensorBoard's text plugin): accuracy or entity F1, flip rate, changed."""
    score = "entity_f1" if rows and "entity_f1" in rows[0] else "accuracy"
    lines = [f"| perturbation | {score.replace('_', ' ')} | flip rate | texts changed |", "|---|---|---|---|"]
    for row in rows:
        cells = [("n/a" if row.get(k) is None else f"{row[k]:.4f}") for k in (score, "flip_rate", "changed")]
        lines.append(f"| {row['perturbation']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _to_tensorboard(logdir: pathlib.Path, tag: str, png: bytes | None, metrics: dict[str, Any]) -> None:
    from llmos_tf._tf import tf

    writer = tf.summary.create_file_writer(str(logdir))
    with writer.as_default():
        if png is not None:
            tf.summary.image(f"reliability/{tag}", tf.image.decode_png(png)[None], step=0)
        if "ece" in metrics:
            tf.summary.scalar(f"ece/{tag}", metrics["ece"], step=0)
        if "robustness" in metrics:
            tf.summary.text(f"robustness/{tag}", robustness_markdown(metrics["robustness"]), step=0)
    writer.close()


def print_trust(metrics: dict[str, Any]) -> None:
    """The text form (after the evaluate tables): ECE, and the robustness table when there is one."""
    if "ece" in metrics:
        where = f"; reliability diagram: {metrics['reliability_diagram']}" if "reliability_diagram" in metrics else ""
        print(f"\nexpected calibration error ({metrics['ece_bins']} bins): {metrics['ece']:.4f}{where}")
    if "robustness" in metrics:
        import pandas as pd

        settings = metrics.get("robustness_settings", {})
        print(f"\nrobustness (rate {settings.get('rate')}, seed {settings.get('seed')}):")
        print(pd.DataFrame(metrics["robustness"]).set_index("perturbation").round(4).to_string())
