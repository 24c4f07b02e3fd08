"""The compression report: one row per variant, against the dense model.

It is printed as a table by ``llmos compress --report``, saved as
``report.json`` / ``report.md`` next to the variants, written into each
variant's model card, logged to TensorBoard (a text table plus one scalar per
figure and variant) and renders as an HTML table in Jupyter.

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
    "variant", "metric", "delta", "sparsity", "size_bytes", "gzip_bytes", "p50_ms_batch1", "throughput_batch32",
    "version", "label", "format",
)


@dataclass
class VariantRow:
    """Figures of one variant. ``metric`` is accuracy (classifiers) or entity F1 (taggers)."""

    variant: str
    metric: float
    sparsity: float
    size_bytes: int
    gzip_bytes: int
    p50_ms_batch1: float
    throughput_batch32: float
    format: str = "savedmodel"  # or "tflite"
    version: int | None = None
    label: str | None = None
    delta: float = 0.0  # metric − dense metric (filled by the report)
    details: dict[str, Any] = field(default_factory=dict)  # per-layer sparsity, skipped layers, notes


@dataclass
class CompressionReport:
    run: str
    metric: str  # "accuracy" or "entity_f1"
    model_name: str | None = None
    rows: list[VariantRow] = field(default_factory=list)

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

    def to_text(self) -> str:
        header = ["variant", self.metric, "Δ", "sparsity", "size MB", "gzip MB", "p50 ms (b=1)", "ex/s (b=32)", "version"]
        lines = []
        for r in self.rows:
            lines.append([
                r.variant, f"{r.metric:.4f}", f"{r.delta:+.4f}", f"{r.sparsity:.1%}", f"{r.size_bytes / 1e6:.2f}",
                f"{r.gzip_bytes / 1e6:.2f}", f"{r.p50_ms_batch1:.1f}", f"{r.throughput_batch32:.0f}",
                "" if r.version is None else f"{r.version}" + (f" ({r.label})" if r.label else ""),
            ])
        widths = [max(len(h), *(len(l[i]) for l in lines)) if lines else len(h) for i, h in enumerate(header)]
        fmt = lambda cells: "  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(cells, widths)))  # noqa: E731
        title = f"compression report: {self.run}" + (f" → {self.model_name}" if self.model_name else "")
        return "\n".join([title, fmt(header), "  ".join("-" * w for w in widths), *(fmt(l) for l in lines)])

    def to_markdown(self) -> str:
        header = ["variant", self.metric, "Δ", "sparsity", "size MB", "gzip MB", "p50 ms (batch 1)", "ex/s (batch 32)", "version"]
        out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        for r in self.rows:
            out.append("| " + " | ".join([
                r.variant, f"{r.metric:.4f}", f"{r.delta:+.4f}", f"{r.sparsity:.1%}", f"{r.size_bytes / 1e6:.2f}",
                f"{r.gzip_bytes / 1e6:.2f}", f"{r.p50_ms_batch1:.1f}", f"{r.throughput_batch32:.0f}",
                "" if r.version is None else str(r.version) + (f" ({r.label})" if r.label else ""),
            ]) + " |")
        return "\n".join(out)

    def _repr_html_(self) -> str:
        return f"<b>{self.run}</b> ({self.metric})" + self.to_frame().drop(columns=["format"]).to_html(index=False, float_format=lambda x: f"{x:.4f}")

    def to_dict(self) -> dict[str, Any]:
        return {"run": self.run, "metric": self.metric, "model_name": self.model_name, "variants": [dataclasses.asdict(r) for r in self.rows]}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "CompressionReport":
        report = cls(run=data["run"], metric=data["metric"], model_name=data.get("model_name"))
        report.rows = [VariantRow(**row) for row in data.get("variants", [])]
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
                for key in ("metric", "sparsity", "size_bytes", "gzip_bytes", "p50_ms_batch1", "throughput_batch32"):
                    name = self.metric if key == "metric" else key
                    tf.summary.scalar(f"compression/{r.variant}/{name}", float(getattr(r, key)), step=step)


def load_report(path: str | pathlib.Path) -> CompressionReport:
    return CompressionReport.from_dict(json.loads(pathlib.Path(path).read_text(encoding="utf-8")))
