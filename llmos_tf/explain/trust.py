"""What ``llmos evaluate`` adds for a sentence classifier: calibration (ECE, reliability diagram) and,
with ``--robustness``, accuracy and flip rate under seeded perturbations.

Kept here, out of the command module, so the evaluate command calls it with a few lines:
``add_trust_arguments(parser)``, ``metrics = evaluate_trust(args, ref, metrics)``, ``print_trust(metrics)``.
The figures need the class probabilities, which the labels-only metrics path does not return,
so the data is predicted once more here (a classifier on an evaluation set: seconds).
For a run folder, the diagram and the robustness table also go to TensorBoard
(``<run>/evaluation``: an image and a text summary).
"""
from __future__ import annotations

import pathlib
from typing import Any

import numpy as np

from llmos_tf.metrics.calibration import ECE_BINS, expected_calibration_error, reliability_figure


def add_trust_arguments(parser) -> None:
    parser.add_argument("--robustness", action="store_true",
                        help="also score seeded perturbations of the data (typo, lowercase, punctuation, drop, neighbour): "
                        "accuracy and flip rate per perturbation (sentence classifiers)")
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
            from llmos_tf.training.trained_run import TrainedRun

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
            from llmos_tf.training.trained_run import TrainedRun

            return EmbeddingNeighbours.of_run(TrainedRun.load(self._neighbour_run))
        return None


def evaluate_trust(args, ref, metrics: dict[str, Any]) -> dict[str, Any]:
    """``metrics`` plus ``ece`` (15 bins), ``reliability_diagram`` and, with ``--robustness``, ``robustness`` rows."""
    if "accuracy" not in metrics or "entity_f1" in metrics or ref.task not in (None, "classification"):
        return metrics  # taggers and multitask heads: not covered here
    from llmos_tf.data.readers import read_labelled_table

    model = _Classifier(ref)
    frame = read_labelled_table(args.data, args.text_column or model.columns[0], args.label_column or model.columns[1])
    y_true = np.asarray(model.labels.encode(frame["label"].tolist(), path=frame.attrs.get("path"), lines=frame["line"].tolist(),
                                            names=model.names or None))
    texts = frame["text"].tolist()
    probs = model.predict_proba(texts)
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

        if not 0 < args.perturbation_rate <= 1:
            from llmos_tf.errors import ConfigError

            raise ConfigError(f"--perturbation_rate {args.perturbation_rate}: expected a rate in (0, 1]")
        metrics["robustness"] = robustness_table(model.predict_proba, texts, y_true, rate=args.perturbation_rate, seed=args.seed,
                                                 neighbours=model.embedding_neighbours())
        metrics["robustness_settings"] = {"rate": args.perturbation_rate, "seed": args.seed}
    if model.run_dir is not None:
        _to_tensorboard(model.run_dir / "evaluation", pathlib.Path(args.data).stem, image, metrics)
    return metrics


def robustness_markdown(rows: list[dict[str, Any]]) -> str:
    lines = ["| perturbation | accuracy | flip rate | texts changed |", "|---|---|---|---|"]
    for row in rows:
        cells = [("n/a" if row.get(k) is None else f"{row[k]:.4f}") for k in ("accuracy", "flip_rate", "changed")]
        lines.append(f"| {row['perturbation']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _to_tensorboard(logdir: pathlib.Path, tag: str, png: bytes, metrics: dict[str, Any]) -> None:
    from llmos_tf._tf import tf

    writer = tf.summary.create_file_writer(str(logdir))
    with writer.as_default():
        tf.summary.image(f"reliability/{tag}", tf.image.decode_png(png)[None], step=0)
        tf.summary.scalar(f"ece/{tag}", metrics["ece"], step=0)
        if "robustness" in metrics:
            tf.summary.text(f"robustness/{tag}", robustness_markdown(metrics["robustness"]), step=0)
    writer.close()


def print_trust(metrics: dict[str, Any]) -> None:
    """The text form (after the evaluate tables)."""
    if "ece" not in metrics:
        return
    where = f"; reliability diagram: {metrics['reliability_diagram']}" if "reliability_diagram" in metrics else ""
    print(f"\nexpected calibration error ({metrics['ece_bins']} bins): {metrics['ece']:.4f}{where}")
    if "robustness" in metrics:
        import pandas as pd

        settings = metrics.get("robustness_settings", {})
        print(f"\nrobustness (rate {settings.get('rate')}, seed {settings.get('seed')}):")
        print(pd.DataFrame(metrics["robustness"]).set_index("perturbation").round(4).to_string())
