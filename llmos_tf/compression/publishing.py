"""The publishing policy of ``llmos compress``: what clients get by default never silently gets worse.

Split out of :mod:`.pipeline` (which re-exports :func:`publish_variants` and
:func:`within_drop`). Given a measured report and the staged version folders:
a variant whose metric drop exceeds ``max_drop`` is held back; the smallest
within it (gzipped bytes a server loads by default) is labelled ``compressed``
and published last, so it is the highest version; nothing is published without
a model base path. Every decision is a sentence in ``report.publishing``.

Example::

    published = publish_variants(report, staged, max_drop=0.01, publish="all", model_base_path="saved_models", name="sst2")
"""
from __future__ import annotations

import dataclasses
import json
import pathlib
import shutil
from typing import Any, Callable

from llmos_tf.compression.report import CompressionReport, VariantRow


def _plain(obj) -> dict[str, Any]:
    return dataclasses.asdict(obj) if dataclasses.is_dataclass(obj) else dict(obj)


DROP_TOLERANCE = 1e-9  # 0.90 - 0.89 is 0.01000000000000001 in floating point; that is still a drop of 0.01


def within_drop(row: VariantRow, max_drop: float) -> bool:
    """Whether a variant's metric is at most ``max_drop`` below the dense model's (``row.delta`` is metric − dense)."""
    return row.drop <= max_drop + DROP_TOLERANCE


def _choose_compressed(report: CompressionReport, max_drop: float) -> VariantRow | None:
    """The variant labelled ``compressed``: the smallest (gzipped bytes a server loads by default) within ``max_drop``."""
    if report.dense is None:
        return None
    candidates = [r for r in report.rows if r.variant != "dense" and within_drop(r, max_drop)]
    if not candidates:
        return None
    return min(candidates, key=lambda r: (r.served_gzip_bytes, -r.metric, r.tflite_gzip_bytes or 0))


def _publish(staged: pathlib.Path, row: VariantRow, model_base_path: pathlib.Path, name: str, labels: list[str],
             report: CompressionReport) -> int:
    """Copy a staged version folder into ``<base>/<name>/<next>`` (atomically) and label it."""
    from llmos_tf.export.layout import next_version, staged_version
    from llmos_tf.export.model_server_config import set_version_label

    model_dir = model_base_path / name
    version = next_version(model_dir)
    with staged_version(model_dir, model_dir / str(version), force=False) as tmp:
        shutil.copytree(staged, tmp, dirs_exist_ok=True)
        card_path = tmp / "assets" / "llmos.json"
        card = json.loads(card_path.read_text(encoding="utf-8"))
        card["version"] = version
        card["version_labels"] = labels
        card["compression"] = {**card.get("compression", {}), "report_row": _plain(row), "report": report.to_dict()}
        card_path.write_text(json.dumps(card, indent=2, default=str) + "\n", encoding="utf-8")
    for label in labels:
        set_version_label(model_base_path, name, label, version)
    return version


def _points(drop: float) -> str:
    """A metric drop in points for messages: 0.028 → "2.8 points"."""
    return f"{drop * 100:.1f} points"


def _publication_plan(report: CompressionReport, max_drop: float, publish: str) -> tuple[VariantRow | None, list[VariantRow], list[VariantRow]]:
    """(chosen, to publish in this order, held back). The chosen variant is last, so it gets the highest version."""
    chosen = _choose_compressed(report, max_drop)
    variants = [r for r in report.rows if r.variant != "dense"]
    held_back = [r for r in variants if report.dense is None or not within_drop(r, max_drop)]
    if publish == "all":
        order = [r for r in variants if r not in held_back and r is not chosen] + ([chosen] if chosen is not None else [])
    elif publish == "compressed":
        order = [chosen] if chosen is not None else []
    else:
        order = []
    return chosen, order, held_back


def publish_variants(report: CompressionReport, staged: dict[str, pathlib.Path], *, max_drop: float, publish: str,
                     model_base_path: str | pathlib.Path | None, name: str, say: Callable[[str], None] = print) -> list[VariantRow]:
    """Apply the publishing policy (module docstring) to a measured report; returns the published rows in version order.

    Fills each row's ``status``, ``staged_path``, ``version`` and ``label``, and ``report.publishing``
    with what was done and why (each sentence also goes to ``say``)."""
    report.max_drop = max_drop
    report.model_base_path = str(model_base_path) if model_base_path is not None else None
    for row in report.rows:
        row.staged_path = str(staged[row.variant]) if row.variant in staged else None
        row.status = "reference" if row.variant == "dense" else "staged"
    chosen, order, held_back = _publication_plan(report, max_drop, publish)
    dense = report.dense
    variants = [r for r in report.rows if r.variant != "dense"]
    staging_dir = next(iter(staged.values())).parent if staged else None
    notes: list[str] = []
    for row in held_back:
        row.status = "held back"
        notes.append(f"held back {row.variant}: its {report.metric} is {_points(row.drop)} below the dense model's, more than "
                     f"--max_drop {max_drop:g}; it is not published and stays staged in {row.staged_path}")
    if not variants:
        notes.append("nothing to publish: only the dense model was measured")
    elif chosen is None:
        if dense is None:
            notes.append("nothing published: there is no dense row to measure the drop against")
        else:
            best = min(variants, key=lambda r: r.drop)
            notes.append(
                f"nothing published: no variant is within --max_drop {max_drop:g} of the dense {report.metric} {dense.metric:.4f} "
                f"(the smallest drop is {best.variant}'s, {_points(best.drop)}), so what clients get stays as it is. "
                f"To accept a bigger drop, run again with --max_drop {_round_up(best.drop):g}"
                f"{' and --model_base_path' if model_base_path is None else ''} (the pruned model is cached)"
            )
    elif model_base_path is None:
        ready = ", ".join(f"{r.variant}{' (compressed)' if r is chosen else ''}" for r in variants if r not in held_back)
        notes.append(f"nothing published: no --model_base_path given; the variants stay staged in {staging_dir} "
                     f"(within --max_drop {max_drop:g}: {ready}); to publish, run again with --model_base_path, e.g. saved_models")
    elif not order:  # --publish none
        notes.append(f"nothing published (--publish none); the variants stay staged in {staging_dir}")
    published: list[VariantRow] = []
    if model_base_path is not None and chosen is not None:
        for row in order:
            is_chosen = row is chosen
            labels = [row.variant] + (["compressed"] if is_chosen else [])
            row.version = _publish(staged[row.variant], row, pathlib.Path(model_base_path), name, labels, report)
            row.label = "compressed" if is_chosen else row.variant
            row.status = "published"
            published.append(row)
    if published:
        listing = ", ".join(f"{r.variant} → {r.version}" for r in published)
        drop = f"{_points(chosen.drop)} below dense" if chosen.drop > DROP_TOLERANCE else "no drop"
        notes.append(f"published as versions of {pathlib.Path(model_base_path) / name}: {listing}; {chosen.variant} ({drop}) "
                     f"carries the label 'compressed' and is the highest version, which unlabelled requests get")
    report.publishing = notes
    for line in notes:
        say(line)
    return published


def _round_up(drop: float) -> float:
    """The smallest ``--max_drop`` with 3 decimals that accepts ``drop``."""
    import math

    return max(0.0, math.ceil(round(drop * 1000, 6)) / 1000)
