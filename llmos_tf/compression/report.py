"""The compression report: one row per variant, against the dense model.

It is printed as a table by ``llmos compress --report``, saved as
``report.json`` / ``report.md`` next to the variants, written into each
published variant's model card, logged to TensorBoard (a text table plus one
scalar per figure and variant) and renders as an HTML table in Jupyter.

Sizes are those of what a version folder holds, in two parts:

* ``size_bytes`` / ``gzip_bytes``: the SavedModel, i.e. the version folder
  without ``assets``, ``assets.extra`` and ``model.tflite`` (what a stock
  ``tensorflow_model_server`` loads);
* ``tflite_bytes`` / ``tflite_gzip_bytes``: the ``model.tflite`` beside it
  (what ``--prefer_tflite_model`` loads), ``None`` when there is none.

Each row also has the variant's ``parameters`` and ``flops`` (matmul FLOPs per
sentence at the validation mean length ``mean_tokens``; see
:mod:`llmos_tf.compression.structured.flops`): what structured compression
removes, where unstructured zeros change neither.

Each row also says what became of the variant (``status``: ``reference`` for
the dense model, ``published``, ``held back`` when its metric drop exceeds
``max_drop``, ``staged`` when it was within the drop but not published) and
where its version folder is staged; ``publishing`` holds the sentences
``llmos compress`` printed about it.

Example::

    report = CompressionReport(run="runs/sst2_bert", metric="accuracy")
    report.add(VariantRow("dense", metric=0.91, size_bytes=90_000_000, ...))
    report.to_frame()          # pandas DataFrame
    print(report.to_text())    # fixed-width table
"""
from __future__ import annotations

import dataclasses
import json
import pathlib
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

COLUMNS = (
    "variant", "metric", "delta", "sparsity", "size_bytes", "gzip_bytes", "tflite_bytes", "tflite_gzip_bytes",
    "p50_ms_batch1", "throughput_batch32", "parameters", "flops", "version", "label", "format", "status",
)
SIZE_FIGURES = ("size_bytes", "gzip_bytes", "tflite_bytes", "tflite_gzip_bytes")


@dataclass
class VariantRow:
    """Figures of one variant. ``metric`` is accuracy (classifiers) or entity F1 (taggers).

    ``size_bytes`` / ``gzip_bytes`` are the SavedModel's (the version folder minus ``assets``,
    ``assets.extra`` and ``model.tflite``); ``tflite_bytes`` / ``tflite_gzip_bytes`` the
    ``model.tflite`` file's, ``None`` when the version has none.
    """

    variant: str
    metric: float
    sparsity: float
    size_bytes: int
    gzip_bytes: int
    p50_ms_batch1: float
    throughput_batch32: float
    format: str = "savedmodel"  # "savedmodel", "savedmodel+tflite" or "tflite" (TFLite-only export)
    version: int | None = None
    label: str | None = None
    delta: float = 0.0  # metric − dense metric (filled by the report)
    details: dict[str, Any] = field(default_factory=dict)  # per-layer sparsity, skipped layers, notes
    tflite_bytes: int | None = None
    tflite_gzip_bytes: int | None = None
    status: str = ""  # "reference", "published", "held back" or "staged" (set by ``llmos compress``)
    parameters: int | None = None  # weights of the variant's model (structured compression removes some)
    flops: float | None = None  # matmul FLOPs per sentence at the report's mean_tokens (structured.flops)
    staged_path: str | None = None  # the variant's version folder under <report_dir>/variants

    @property
    def drop(self) -> float:
        """How far the metric fell below the dense model's (negative when it rose)."""
        return -self.delta

    @property
    def served_gzip_bytes(self) -> int:
        """Gzipped bytes a server loads by default: the SavedModel, plus ``model.tflite`` when the
        SavedModel carries no weights of its own (a TFLite-only export)."""
        extra = (self.tflite_gzip_bytes or 0) if self.format == "tflite" else 0
        return int(self.gzip_bytes + extra)


@dataclass
class CompressionReport:
    run: str
    metric: str  # "accuracy" or "entity_f1"
    model_name: str | None = None
    rows: list[VariantRow] = field(default_factory=list)
    max_drop: float | None = None
    model_base_path: str | None = None  # where variants were published (None: nowhere)
    publishing: list[str] = field(default_factory=list)  # what was published or held back, and why
    mean_tokens: float | None = None  # validation mean length in tokens: where ``flops`` are counted

    def add(self, row: VariantRow) -> VariantRow:
        dense = self.dense
        row.delta = float(row.metric - dense.metric) if dense is not None else 0.0
        self.rows.append(row)
        return row

    @property
    def dense(self) -> VariantRow | None:
        return next((r for r in self.rows if r.variant == "dense"), None)

    def row(self, variant: str) -> VariantRow:
        for r in self.rows:
            if r.variant == variant:
                return r
        raise KeyError(variant)

    # -- renderings --------------------------------------------------------
    def to_frame(self) -> pd.DataFrame:
        frame = pd.DataFrame([{c: getattr(r, c) for c in COLUMNS} for r in self.rows], columns=list(COLUMNS))
        return frame.rename(columns={"metric": self.metric})

    def _cells(self, r: VariantRow) -> list[str]:
        mb = lambda n: "" if n is None else f"{n / 1e6:.2f}"  # noqa: E731
        if r.version is not None:
            fate = f"{r.version}" + (f" ({r.label})" if r.label else "")
        else:
            fate = "" if r.status in ("", "reference") else r.status
        return [
            r.variant, f"{r.metric:.4f}", f"{r.delta:+.4f}", f"{r.sparsity:.1%}", mb(r.size_bytes), mb(r.gzip_bytes),
            mb(r.tflite_bytes), mb(r.tflite_gzip_bytes), f"{r.p50_ms_batch1:.1f}", f"{r.throughput_batch32:.0f}",
            "" if r.parameters is None else f"{r.parameters / 1e6:.2f}", "" if r.flops is None else f"{r.flops / 1e6:.0f}", fate,
        ]

    def _header(self, batch1: str, batch32: str) -> list[str]:
        return ["variant", self.metric, "Δ", "sparsity", "SavedModel MB", "SavedModel gzip MB", "TFLite MB", "TFLite gzip MB",
                f"p50 ms ({batch1})", f"ex/s ({batch32})", "params M",
                "MFLOPs/sentence" + (f" (L={self.mean_tokens:.1f})" if self.mean_tokens else ""), "version"]

    def to_text(self) -> str:
        header = self._header("b=1", "b=32")
        lines = [self._cells(r) for r in self.rows]
        widths = [max(len(h), *(len(l[i]) for l in lines)) if lines else len(h) for i, h in enumerate(header)]
        fmt = lambda cells: "  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(cells, widths)))  # noqa: E731
        title = f"compression report: {self.run}" + (f" → {self.model_name}" if self.model_name else "")
        return "\n".join([title, fmt(header), "  ".join("-" * w for w in widths), *(fmt(l) for l in lines), *self.publishing])

    def to_markdown(self) -> str:
        header = self._header("batch 1", "batch 32")
        out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        for r in self.rows:
            out.append("| " + " | ".join(self._cells(r)) + " |")
        if self.publishing:
            out.append("")
            out.extend(f"- {line}" for line in self.publishing)
        return "\n".join(out)

    def _repr_html_(self) -> str:
        import html

        notes = "".join(f"<br>{html.escape(line)}" for line in self.publishing)
        table = self.to_frame().drop(columns=["format"]).to_html(index=False, float_format=lambda x: f"{x:.4f}")
        return f"<b>{html.escape(self.run)}</b> ({self.metric})" + table + notes

    def to_dict(self) -> dict[str, Any]:
        return {"run": self.run, "metric": self.metric, "model_name": self.model_name, "max_drop": self.max_drop,
                "model_base_path": self.model_base_path, "publishing": list(self.publishing), "mean_tokens": self.mean_tokens,
                "variants": [dataclasses.asdict(r) for r in self.rows]}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "CompressionReport":
        """Also reads reports written before the TFLite sizes and the publishing fields existed."""
        report = cls(run=data["run"], metric=data["metric"], model_name=data.get("model_name"), max_drop=data.get("max_drop"),
                     model_base_path=data.get("model_base_path"), publishing=list(data.get("publishing") or []),
                     mean_tokens=data.get("mean_tokens"))
        known = {f.name for f in dataclasses.fields(VariantRow)}
        report.rows = [VariantRow(**{k: v for k, v in row.items() if k in known}) for row in data.get("variants", [])]
        return report

    def save(self, folder: str | pathlib.Path) -> pathlib.Path:
        """``report.json`` (machine-readable) and ``report.md`` (for humans and READMEs)."""
        from llmos_tf.training.artifacts import write_json_atomic, write_text_atomic

        folder = pathlib.Path(folder)
        write_json_atomic(folder / "report.json", self.to_dict())
        write_text_atomic(folder / "report.md", self.to_markdown() + "\n")
        return folder / "report.json"

    def log_to_tensorboard(self, log_dir: str | pathlib.Path) -> None:
        """The table as a text summary and each figure as a scalar (step = row index)."""
        from llmos_tf._tf import tf

        with tf.summary.create_file_writer(str(log_dir)).as_default():
            tf.summary.text("compression/report", self.to_markdown(), step=0)
            for step, r in enumerate(self.rows):
                for key in ("metric", "sparsity", *SIZE_FIGURES, "p50_ms_batch1", "throughput_batch32", "parameters", "flops"):
                    value = getattr(r, key)
                    if value is None:  # no model.tflite in this version
                        continue
                    name = self.metric if key == "metric" else key
                    tf.summary.scalar(f"compression/{r.variant}/{name}", float(value), step=step)


def load_report(path: str | pathlib.Path) -> CompressionReport:
    return CompressionReport.from_dict(json.loads(pathlib.Path(path).read_text(encoding="utf-8")))
