"""The Python API, shaped for notebooks: one call trains, one object holds the run.

The CLI and this module drive the same trainer, run folder and exporters; the
difference is what comes back. ``llmos train`` prints a table, ``train()``
returns a :class:`Run` whose results are pandas DataFrames and whose
evaluation and compression reports render as HTML tables in Jupyter.

Example::

    import llmos_tf
    run = llmos_tf.train("configs/sample_bilstm.yaml", training__epochs=2, overwrite=True)
    run.history                       # one row per epoch: loss, accuracy, val_loss, val_accuracy, ...
    run.evaluate("data/sample/sentiment_test.csv")["accuracy"]
    run.predict(["a warm and funny film"])
    run.export("saved_models", "sample")
    same = llmos_tf.load_run("runs/sample_bilstm")

Overrides use the config's dotted keys, either as keyword arguments with ``__``
for the dot (``training__epochs=1``) or as a mapping (``{"training.epochs": 1}``);
they go through the same schema validation as ``llmos train --set``.
"""
from __future__ import annotations

import html
import json
import pathlib
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

import pandas as pd

from llmos_tf.errors import ConfigError, RunError
from llmos_tf.tensorboard_data import hparams_frame, read_history  # noqa: F401  (part of the API)

def _override_strings(overrides: Mapping[str, Any] | None, keyword_overrides: Mapping[str, Any]) -> list[str]:
    """``{"a.b": 1}`` and ``a__b=1`` → ``["a.b=1"]`` (values JSON-encoded: JSON is YAML, so types survive)."""
    items: dict[str, Any] = {}
    if overrides is not None:
        if not isinstance(overrides, Mapping):
            raise ConfigError(f"overrides: expected a mapping of dotted keys to values, e.g. {{'training.epochs': 1}}, got {overrides!r}")
        items.update({str(k): v for k, v in overrides.items()})
    items.update({k.replace("__", "."): v for k, v in keyword_overrides.items()})
    out = []
    for key, value in items.items():
        if isinstance(value, pathlib.PurePath):
            value = str(value)
        try:
            encoded = json.dumps(value)
        except TypeError:
            raise ConfigError(f"override {key}: value {value!r} is not a plain number, string, bool, list or mapping") from None
        out.append(f"{key}={encoded}")
    return out


def resolve_config(config_or_path: Any, overrides: Mapping[str, Any] | None = None, **keyword_overrides: Any):
    """A validated :class:`~llmos_tf.config.RunConfig` from a YAML path, a mapping or a RunConfig, plus overrides."""
    from llmos_tf.config import RunConfig, config_from_dict, load_config

    strings = _override_strings(overrides, keyword_overrides)
    if isinstance(config_or_path, (str, pathlib.PurePath)):
        return load_config(config_or_path, strings)
    if isinstance(config_or_path, RunConfig):
        return config_from_dict(config_or_path.to_dict(), strings)
    if isinstance(config_or_path, Mapping):
        return config_from_dict(config_or_path, strings)
    raise ConfigError(f"config: expected a YAML path, a mapping or a RunConfig, got {type(config_or_path).__name__}")


def train(config_or_path: Any, overrides: Mapping[str, Any] | None = None, *, overwrite: bool = False,
          strategy: str = "auto", verbose: int = 0, profile: str | None = None, **keyword_overrides: Any) -> "Run":
    """Train the run a config describes and return it as a :class:`Run`.

    ``verbose`` is Keras' fit verbosity (0 = quiet, which suits notebooks; 2 = one line per epoch);
    ``profile="2,4"`` records profiler traces of those training batches (as ``llmos train --profile``).
    """
    from llmos_tf.training.trainer import train as run_training

    cfg = resolve_config(config_or_path, overrides, **keyword_overrides)
    kwargs = {"profile": profile} if profile else {}
    result = run_training(cfg, overwrite=overwrite, strategy=strategy, verbose=verbose, command="llmos_tf.train(...)", **kwargs)
    return Run(pathlib.Path(result.run_dir), _fit_history=result.history)


def load_run(path: str | pathlib.Path) -> "Run":
    """A finished run folder (``runs/<name>``) as a :class:`Run`."""
    from llmos_tf.training import artifacts

    artifacts.read_run_info(path)  # a clear RunError for a missing or unfinished folder
    return Run(pathlib.Path(path))


@dataclass
class Evaluation:
    """Metrics of one evaluation; ``ev["accuracy"]`` reads a figure, Jupyter shows the tables.

    ``task`` is the task the metrics belong to (a multitask run's head: its own task); its class
    (:func:`llmos_tf.tasks.base.task_class`) says which figures are the headline and how per-class rows read."""

    metrics: dict[str, Any]
    task: str = "classification"

    @property
    def _task(self):
        from llmos_tf.tasks import task_class

        return task_class(self.task, every=True)

    def __getitem__(self, key: str) -> Any:
        return self.metrics[key]

    def keys(self):
        return self.metrics.keys()

    @property
    def summary(self) -> pd.DataFrame:
        """One row: the headline figures (accuracy and macro-F1, or entity P/R/F1)."""
        return pd.DataFrame([{k: self.metrics[k] for k, _ in self._task.summary_metrics if k in self.metrics}])

    @property
    def per_class(self) -> pd.DataFrame:
        """Precision, recall, F1 and support per label (per entity type for NER)."""
        return self._task.per_class_frame(self.metrics)

    @property
    def confusion(self) -> pd.DataFrame:
        """Rows: true label, columns: predicted label (classifiers only)."""
        if "confusion_matrix" not in self.metrics:
            raise RunError("this evaluation has no confusion matrix (NER runs report per-entity-type figures)")
        labels = self.metrics["labels"]
        return pd.DataFrame(self.metrics["confusion_matrix"], index=pd.Index(labels, name="true"), columns=pd.Index(labels, name="predicted"))

    def to_frame(self) -> pd.DataFrame:
        return self.per_class

    def _repr_html_(self) -> str:
        fmt = lambda x: f"{x:.4f}"  # noqa: E731
        return (self.summary.to_html(index=False, float_format=fmt)
                + self.per_class.to_html(float_format=fmt))

    def __repr__(self) -> str:
        return "Evaluation\n" + self.summary.to_string(index=False) + "\n\n" + self.per_class.round(4).to_string()


@dataclass
class Run:
    """A finished run folder with notebook-friendly accessors (models are loaded on first use)."""

    run_dir: pathlib.Path
    _fit_history: dict[str, list[float]] | None = field(default=None, repr=False)
    _loaded: Any = field(default=None, repr=False)

    # -- facts -------------------------------------------------------------------
    @property
    def info(self) -> dict[str, Any]:
        from llmos_tf.training import artifacts

        return artifacts.read_run_info(self.run_dir)

    @property
    def name(self) -> str:
        return str(self.info.get("name", self.run_dir.name))

    @property
    def task(self) -> str:
        return str(self.info.get("task", "classification"))

    @property
    def config(self):
        from llmos_tf.config import load_config
        from llmos_tf.training import artifacts

        return load_config(self.run_dir / artifacts.CONFIG_FILE)

    @property
    def metrics(self) -> dict[str, Any]:
        """``metrics.json``: validation (and test) figures of the best epoch."""
        return json.loads((self.run_dir / "metrics.json").read_text(encoding="utf-8"))

    @property
    def history(self) -> pd.DataFrame:
        """One row per epoch (index ``epoch``, from 1): Keras' history when trained in this
        session, else read back from the run's TensorBoard event files."""
        if self._fit_history:
            frame = pd.DataFrame(self._fit_history)
            frame.index = pd.RangeIndex(1, len(frame) + 1, name="epoch")
            return frame
        return read_history(self.run_dir)

    # -- models ------------------------------------------------------------------
    @property
    def task_class(self):
        """The run's :class:`~llmos_tf.tasks.base.Task` class (from ``run.json``), whose attributes answer what
        differs between tasks (heads, data format, headline metrics)."""
        from llmos_tf.tasks import run_task

        return run_task(self.run_dir)

    @property
    def model(self):
        """The loaded run, its task's predictor (``tasks.load_trained``: TrainedRun, TrainedTagger,
        TrainedMultitask or TrainedEncoder), cached."""
        if self._loaded is None:
            from llmos_tf.tasks import load_trained

            self._loaded = load_trained(self.run_dir)
        return self._loaded

    def _head_args(self, head: str | None) -> tuple:
        if self.task_class.kind.has_heads:
            return (head,)
        if head is not None:
            raise ConfigError(f"head={head!r}: only a multitask run has heads; {self.run_dir} is a {self.task} run")
        return ()

    def predict(self, texts: str | Sequence[str], head: str | None = None) -> pd.DataFrame:
        """Classifiers: ``text, label, probability``; taggers: ``text, tokens, tags, entities``.

        An empty (or whitespace-only) text still gets an answer, from no words at all; a
        ``UserWarning`` says which, as ``llmos predict`` does on stderr."""
        texts = [texts] if isinstance(texts, str) else [str(t) for t in texts]
        empty = [i for i, t in enumerate(texts) if not t.strip()]
        if empty:
            import warnings

            warnings.warn(f"text(s) at position {', '.join(map(str, empty[:10]))} are empty: the model answers anyway, "
                          "from no words at all, so those labels mean nothing", UserWarning, stacklevel=2)
        return self.model.predict(texts, *self._head_args(head))

    def evaluate(self, data: str | pathlib.Path | pd.DataFrame, head: str | None = None) -> Evaluation:
        """Metrics on a labelled file (CoNLL for NER runs) or a frame of ``text``/``label`` (``tokens``/``tags``)."""
        kind = self.task_class.kind
        if isinstance(data, pd.DataFrame) and kind.data_format in ("table", "per_head"):  # per_head too: the frame is checked for its columns first
            data = _labelled_frame(data)
        metrics = self.model.evaluate(data, *self._head_args(head))
        return Evaluation(metrics, task=self.model.tasks[head] if kind.has_heads else self.task)  # a head's metrics are its task's

    def explain(self, texts: str | Sequence[str], label: str | None = None, steps: int = 32):
        """Word attributions (integrated gradients) for the predicted class, or ``label``: a DataFrame
        (``text, label, probability, words, attributions, explained, baseline_probability``) that Jupyter
        shows as highlighted sentences. For an NER run: one row per (predicted entity, word), see
        :func:`llmos_tf.explain.entity_frame.explain_tagger` (``label`` does not apply)."""
        from llmos_tf.explain.explanations import explain_run

        explains = self.task_class.kind.explains
        if explains == "entities":  # one row per (predicted entity, word): llmos_tf.explain.entity_frame
            from llmos_tf.explain.entity_frame import explain_tagger

            return explain_tagger(self.model, [texts] if isinstance(texts, str) else list(texts), steps=steps)
        if explains is None:
            from llmos_tf.errors import RunError

            raise RunError(f"{self.run_dir}: a {self.task} run; Run.explain covers sentence classifiers and NER taggers")
        return explain_run(self.model, [texts] if isinstance(texts, str) else list(texts), label=label, steps=steps)

    # -- downstream ----------------------------------------------------------------
    def export(self, model_base_path: str | pathlib.Path, name: str | None = None, *, version: int | None = None,
               force: bool = False) -> pathlib.Path:
        """Write a TF Serving version folder ``<base>/<name>/<version>``; returns its path."""
        from llmos_tf.export.writer import export_run

        return export_run(self.run_dir, model_base_path, name or self.name, version=version, force=force, command="llmos_tf.Run.export(...)")

    def compress(self, **kwargs: Any):
        """Prune / quantize / distill variants via :func:`llmos_tf.compression.pipeline.compress`;
        returns its :class:`~llmos_tf.compression.report.CompressionReport` (an HTML table in Jupyter)."""
        from llmos_tf.compression.pipeline import compress

        kwargs.setdefault("command", "llmos_tf.Run.compress(...)")
        return compress(self.run_dir, **kwargs)

    # -- display -------------------------------------------------------------------
    def _summary_rows(self) -> list[tuple[str, Any]]:
        info = self.info
        rows: list[tuple[str, Any]] = [("run", str(self.run_dir)), ("task", self.task), ("architecture", info.get("architecture")),
                                       ("parameters", f"{info.get('parameters', 0):,}"), ("epochs run (best)", f"{info.get('epochs_run')} ({info.get('best_epoch')})")]
        for split, figures in (info.get("metrics") or {}).items():
            for key, value in figures.items():
                if key != "examples" and isinstance(value, (int, float)):
                    rows.append((f"{split} {key}", f"{value:.4f}"))
        rows.append(("wall time", f"{info.get('wall_time_seconds')} s"))
        return rows

    def _repr_html_(self) -> str:
        cells = "".join(f"<tr><th style='text-align:left'>{html.escape(k)}</th><td>{html.escape(str(v))}</td></tr>" for k, v in self._summary_rows())
        return f"<table>{cells}</table>"

    def __repr__(self) -> str:
        return f"Run({str(self.run_dir)!r}, task={self.task!r})"


def _labelled_frame(frame: pd.DataFrame) -> pd.DataFrame:
    """A user's DataFrame → the reader's shape (``text``, ``label``, ``line``), checking the columns."""
    text_col = next((c for c in ("text", "sentence") if c in frame.columns), None)
    label_col = next((c for c in ("label", "category") if c in frame.columns), None)
    if text_col is None or label_col is None:
        raise ConfigError(f"evaluate: the DataFrame needs a text column (text or sentence) and a label column (label or category); it has {list(frame.columns)}")
    out = pd.DataFrame({"text": frame[text_col].astype(str).tolist(), "label": frame[label_col].astype(str).tolist()})
    out["line"] = list(range(2, len(out) + 2))
    out.attrs["path"] = "<DataFrame>"
    return out
