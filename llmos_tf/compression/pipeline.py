"""``llmos compress``: a trained run in, smaller served variants and a measured report out.

For a finished run (BiLSTM or BERT classifier, BERT tagger) it builds the
variants a user asks for, each exported as a TF Serving version folder with the
same string-in signature, then measures every one *through that signature*
(tokenizer included) on the run's validation data:

* ``dense``: the trained model as it is (the reference row);
* ``structured_vocab`` / ``structured_layers`` / ``structured_heads`` / ``structured_ffn``: a row
  per structured step asked for (:mod:`.structured.steps`: vocabulary trimming, layer dropping,
  head and feed-forward pruning, each fine-tuned from the dense model); the last is the base of
  the variants below, which are then named after it (``structured_ffn_dynamic``, ...);
* ``pruned``: TF-MOT magnitude pruning to ``target_sparsity`` while fine-tuning,
  then ``strip_pruning`` (optionally 2:4 structured);
* ``<base>_<mode>`` for each TFLite ``quantize`` mode (``dynamic`` int8 weights,
  ``int8`` full-integer calibrated on training texts, ``float16``), where base is
  ``pruned`` or ``dense``;
* ``qat_int8`` / ``pruned_qat_int8``: quantization-aware training (sparsity-
  preserving after pruning), converted to an int8 TFLite model.

Variants are staged under ``<report_dir>/variants/`` (``<run>/compression`` by
default). What clients get by default never silently gets worse:

* nothing is published unless ``model_base_path`` is given;
* a variant whose metric drop exceeds ``max_drop`` is never published: it stays
  staged, and the console and the report say so (variant, drop, path);
* among the others, ``compressed`` labels the smallest (gzipped bytes a server
  loads by default); ``publish="all"`` publishes them all with it LAST, so it is
  the highest version, which TF Serving answers for unlabelled requests;
  ``publish="compressed"`` publishes only it, ``"none"`` nothing;
* if no variant is within ``max_drop``, nothing is published and the message
  names the smallest drop, i.e. the ``max_drop`` that would accept it.

Published variants become new versions of ``<model_base_path>/<name>/`` with
version labels (the variant name, plus ``compressed``) recorded in
``<model_base_path>/models.config`` so ``llmos serve --model_config_file``
routes labels to them. The report goes to the console, ``report.json`` /
``report.md``, every published model card and TensorBoard.

Example::

    report = compress("runs/sample_bilstm", target_sparsity=0.8, quantize=("dynamic", "int8"),
                      model_base_path="saved_models", name="sample", max_drop=0.01)
    report.to_frame()
    report.publishing   # what was published or held back, and why
"""
from __future__ import annotations

import json
import pathlib
import shutil
import time
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np

from llmos_tf.compression.measure import SizeFigures, file_sizes, measure_speed
from llmos_tf.compression.publishing import DROP_TOLERANCE, publish_variants, within_drop  # noqa: F401  (re-exported)
from llmos_tf.compression.report import CompressionReport, VariantRow
from llmos_tf.compression.structured.steps import StructuredOptions
from llmos_tf.errors import ConfigError, RunError
from llmos_tf.export.writer import TFLITE_FILE

QUANTIZE_MODES = ("dynamic", "int8", "float16")
PUBLISH_CHOICES = ("all", "compressed", "none")


@dataclass
class Variant:
    """A variant before it is measured: its model (Keras) and, for TFLite variants, the file's bytes."""

    name: str
    model: Any
    tflite: bytes | None = None
    details: dict[str, Any] | None = None
    sparsity: float | None = None
    run: Any = None  # the run it tokenizes with, when not the original one (a trimmed vocabulary)


@dataclass
class ValidationSet:
    texts: list[str]
    gold: list  # label names (classifier) or tag lists (tagger)


def validation_set(run, max_examples: int | None = None) -> ValidationSet:
    """The run's own validation data (the split training used), optionally capped."""
    from llmos_tf.tasks.tagging import TrainedTagger

    if isinstance(run, TrainedTagger):
        from llmos_tf.tasks.tagging_data import prepare_tagging_data

        frame = prepare_tagging_data(run.config.data, run.config.seed).validation
        texts = [" ".join(tokens) for tokens in frame["tokens"]]
        gold = [list(tags) for tags in frame["tags"]]
    else:
        from llmos_tf.data.prepare import prepare_classification_data

        frame = prepare_classification_data(run.config.data, run.config.seed).validation
        texts = frame["text"].astype(str).tolist()
        gold = frame["label"].astype(str).tolist()
    if max_examples and len(texts) > max_examples:
        pick = np.random.default_rng(run.config.seed).choice(len(texts), size=max_examples, replace=False)
        pick.sort()
        texts = [texts[i] for i in pick]
        gold = [gold[i] for i in pick]
    return ValidationSet(texts, gold)


def score(is_tagger: bool, predict: Callable[[Sequence[str]], dict], data: ValidationSet, batch_size: int = 64) -> float:
    """Accuracy (classifier) or conlleval entity F1 (tagger) of a string-in serving function."""
    predicted: list = []
    for start in range(0, len(data.texts), batch_size):
        out = predict(data.texts[start:start + batch_size])
        if is_tagger:
            counts = np.asarray(out["token_count"]).tolist()
            for row, n in zip(np.asarray(out["tags"]), counts):
                predicted.append([t.decode("utf-8") if isinstance(t, bytes) else str(t) for t in row[:n]])
        else:
            predicted.extend(x.decode("utf-8") if isinstance(x, bytes) else str(x) for x in np.asarray(out["label"]))
    if is_tagger:
        from llmos_tf.metrics.conlleval import conlleval

        return float(conlleval(data.gold, predicted)["entity_f1"])
    return float(np.mean([p == g for p, g in zip(predicted, data.gold)])) if data.gold else 0.0


def _serving_function(version_dir: pathlib.Path, tflite: bool) -> Callable[[Sequence[str]], dict]:
    """Load a version folder the way ``llmos serve`` does and return texts → outputs."""
    if tflite:
        from llmos_tf.serving.tflite_servable import TFLiteServable

        servable = TFLiteServable.load("variant", int(version_dir.name), version_dir)
    else:
        from llmos_tf.serving.servable import Servable

        servable = Servable.load("variant", int(version_dir.name), version_dir)

    def predict(texts: Sequence[str]) -> dict:
        return servable.run("serving_default", {"text": np.array([t.encode("utf-8") for t in texts], dtype=object)})

    return predict


def _sparsity(model) -> float:
    from llmos_tf.compression.pruning import weight_sparsity

    rows = weight_sparsity(model)
    params = sum(r.params for r in rows)
    return float(sum(r.sparsity * r.params for r in rows) / params) if params else 0.0


def _check_options(target_sparsity: float, quantize: Sequence[str], publish: str, max_drop: float) -> None:
    if not 0.0 < target_sparsity < 1.0:
        raise ConfigError(f"--target_sparsity: expected a fraction between 0 and 1 (exclusive), got {target_sparsity}")
    bad = [m for m in quantize if m not in QUANTIZE_MODES]
    if bad:
        raise ConfigError(f"--quantize: unknown mode(s) {', '.join(bad)}; valid: {', '.join(QUANTIZE_MODES)}")
    if publish not in PUBLISH_CHOICES:
        raise ConfigError(f"--publish: expected one of {', '.join(PUBLISH_CHOICES)}, got {publish!r}")
    if max_drop < 0:
        raise ConfigError(f"--max_drop: expected a non-negative number, got {max_drop}")


def _check_strategy(*, prune: bool, quantize: Sequence[str], qat: bool, distill_alpha: float | None) -> None:
    """Before any work: every technique asked for must run under the strategy in scope (TF-MOT's
    pruning and QAT do not run under TPUStrategy; :func:`~llmos_tf.training.distribute.check_compression_strategy`)."""
    from llmos_tf._tf import tf
    from llmos_tf.training.distribute import check_compression_strategy

    strategy = tf.distribute.get_strategy()  # the default one from the CLI; a caller's inside strategy.scope()
    for what, used in (("prune", prune), ("ptq", bool(quantize)), ("qat", qat), ("distill", prune and distill_alpha is not None)):
        if used:
            check_compression_strategy(strategy, what)


def build_variants(run, *, prune: bool, target_sparsity: float, structured_2_4: bool, prune_embeddings: bool,
                   quantize: Sequence[str], qat: bool, epochs: int, steps_per_epoch: int | None, log_dir: pathlib.Path,
                   learning_rate: float | None = None, distill_alpha: float | None = None, temperature: float = 2.0,
                   structured: StructuredOptions | None = None, validation_texts: Sequence[str] = (),
                   verbose: int = 0, say: Callable[[str], None] = print) -> list[Variant]:
    """Dense, structured, pruned, quantized and QAT variants of a loaded run (models and TFLite bytes, not yet exported).

    Structured steps (:mod:`.structured.steps`) come first; the last one is the base the others build on."""
    from llmos_tf.compression import run_data
    from llmos_tf.compression.tflite import convert_to_tflite

    variants = [Variant("dense", run.model, sparsity=_sparsity(run.model))]
    base = variants[0]
    if structured is not None and structured.active:
        from llmos_tf.compression.structured.steps import structured_steps

        steps = structured_steps(run, structured, validation_texts=validation_texts, epochs=epochs, steps_per_epoch=steps_per_epoch,
                                 learning_rate=learning_rate, distill_alpha=distill_alpha, temperature=temperature,
                                 cache_dir=log_dir / "structured_cache", verbose=verbose, say=say)
        for step in steps:
            variants.append(Variant(step.name, step.model, details=step.details, sparsity=_sparsity(step.model), run=step.run))
        base = variants[-1]
        run = base.run  # pruning, calibration and QAT tokenize with the trimmed vocabulary
    if prune:
        teacher = f" with the dense model as teacher (alpha {distill_alpha})" if distill_alpha is not None else ""
        say(f"pruning to {target_sparsity:.0%}{' (2:4)' if structured_2_4 else ''}, fine-tuning {epochs} epoch(s){teacher} ...")
        from llmos_tf.compression.pruning import load_cached, prune_run, save_cached

        settings = {"run": str(run.run_dir), "base": base.name, "structured": _plain(structured) if structured else None,
                    "target_sparsity": target_sparsity, "epochs": epochs, "steps_per_epoch": steps_per_epoch,
                    "structured_2_4": structured_2_4, "prune_embeddings": prune_embeddings, "learning_rate": learning_rate,
                    "distill_alpha": distill_alpha, "temperature": temperature}
        cache = log_dir / "pruned_cache"
        result = load_cached(cache, settings)
        if result is not None:
            say(f"reusing the pruned model in {cache} (same settings)")
        else:
            result = prune_run(
                run, target_sparsity=target_sparsity, epochs=epochs, steps_per_epoch=steps_per_epoch,
                structured_2_4=structured_2_4, prune_embeddings=prune_embeddings, learning_rate=learning_rate,
                distill_alpha=distill_alpha, temperature=temperature, log_dir=log_dir / "pruning", verbose=verbose,
            )
            save_cached(cache, settings, result)
        details = {
            "target_sparsity": target_sparsity,
            "structured_2_4": structured_2_4,
            "fine_tune": {"epochs": epochs, "learning_rate": learning_rate, "distill_alpha": distill_alpha, "temperature": temperature},
            "overall_sparsity": result.overall_sparsity,
            "layers": [_plain(r) for r in result.layers],
            "not_pruned": [_plain(r) for r in result.skipped],
        }
        base = Variant("pruned" if base.name == "dense" else f"{base.name}_pruned", result.model, details=details,
                       sparsity=_sparsity(result.model), run=base.run)
        variants.append(base)
    representative = run_data.representative_inputs(run, 100) if "int8" in quantize else None
    example = run_data.representative_inputs(run, 1)
    for mode in quantize:
        say(f"converting {base.name} to TFLite ({mode}) ...")
        conversion = convert_to_tflite(base.model, mode=mode, example_inputs=example, representative=representative, max_length=run.max_length)
        details = {"tflite_mode": mode, "select_tf_ops": conversion.select_tf_ops, "static_shape": conversion.static_shape,
                   "notes": list(conversion.notes), "from": base.name}
        variants.append(Variant(f"{base.name}_{mode}" if base.name != "dense" else mode, base.model, conversion.content, details,
                                base.sparsity, run=base.run))
    if qat:
        from llmos_tf.compression.qat import quantization_aware_train

        say(f"quantization-aware training{' (sparsity-preserving)' if prune else ''} ...")
        result = quantization_aware_train(run, model=base.model if prune else None, epochs=epochs, steps_per_epoch=steps_per_epoch,
                                          preserve_sparsity=prune, verbose=verbose)
        conversion = convert_to_tflite(result.model, mode="dynamic", example_inputs=example, max_length=run.max_length)
        details = {
            "quantized_layers": list(result.quantized_layers),
            "float_layers": [_plain(r) for r in result.float_layers],
            "static_shape": conversion.static_shape,
            "select_tf_ops": conversion.select_tf_ops,
            "notes": list(conversion.notes),
        }
        qat_name = "qat_int8" if base.name == "dense" else f"{base.name}_qat_int8"
        variants.append(Variant(qat_name, result.model, conversion.content, details, base.sparsity, run=base.run))
    return variants


def _plain(obj) -> dict[str, Any]:
    import dataclasses

    return dataclasses.asdict(obj) if dataclasses.is_dataclass(obj) else dict(obj)


def weight_format(variant: Variant) -> str:
    """How a variant's SavedModel stores its weights: int8 for the int8 TFLite modes (dynamic, int8, QAT),
    float16 for float16, float32 for the dense and pruned models."""
    mode = (variant.details or {}).get("tflite_mode")
    if variant.tflite is None:
        return "float32"
    return "float16" if mode == "float16" else "int8"


def _export_variant(run, variant: Variant, base: pathlib.Path, name: str, *, command: str | None) -> pathlib.Path:
    from llmos_tf.export.writer import export_model

    compression = {"method": variant.name, "savedmodel_weights": weight_format(variant), **(variant.details or {})}
    return export_model(variant.run or run, variant.model, base, name, compression=compression, tflite=variant.tflite,
                        weights=weight_format(variant), command=command)


def compress(run_dir: str | pathlib.Path, *, prune: bool = True, target_sparsity: float = 0.8, structured_2_4: bool = False,
             prune_embeddings: bool = True, quantize: Sequence[str] = ("dynamic",), qat: bool = False, epochs: int = 1,
             steps_per_epoch: int | None = None, learning_rate: float | None = None, distill_alpha: float | None = None,
             temperature: float = 2.0, model_base_path: str | pathlib.Path | None = None, name: str | None = None,
             publish: str = "all", tflite_only: bool = False, max_drop: float = 0.01, max_eval_examples: int | None = 2000,
             report_dir: str | pathlib.Path | None = None, command: str | None = None, verbose: int = 0,
             structured: StructuredOptions | None = None, say: Callable[[str], None] = print) -> CompressionReport:
    """Build, export, measure and publish compressed variants of a finished run; see the module docstring.

    ``structured`` (:class:`~.structured.steps.StructuredOptions`): vocabulary trimming, layer dropping,
    head and feed-forward pruning before everything else (each step a row)."""
    from llmos_tf.compression.structured.flops import mean_tokens, model_flops, parameter_count
    from llmos_tf.compression.run_data import load_trained
    from llmos_tf.export.layout import check_model_name
    from llmos_tf.tasks.tagging import TrainedTagger

    _check_options(target_sparsity, quantize, publish, max_drop)
    _check_strategy(prune=prune, quantize=quantize, qat=qat, distill_alpha=distill_alpha)
    if structured is not None:
        structured.check()
    if tflite_only:
        say("--tflite_only is ignored: every version folder holds a SavedModel (int8 weights for quantized variants) "
            "and model.tflite beside it, so the stock tensorflow_model_server serves it")
    run = load_trained(run_dir)
    if structured is not None and structured.active:
        from llmos_tf.compression.structured.steps import check_run

        check_run(run, structured)
    run_dir = pathlib.Path(run_dir)
    name = check_model_name(name or run.config.name)
    is_tagger = isinstance(run, TrainedTagger)
    report_dir = pathlib.Path(report_dir) if report_dir else run_dir / "compression"
    staging = report_dir / "variants"
    shutil.rmtree(staging, ignore_errors=True)  # a previous, possibly interrupted, attempt
    report = CompressionReport(run=str(run_dir), metric="entity_f1" if is_tagger else "accuracy", model_name=name)
    data = validation_set(run, max_eval_examples)
    report.mean_tokens = mean_tokens(run, data.texts)
    started = time.time()
    variants = build_variants(run, prune=prune, target_sparsity=target_sparsity, structured_2_4=structured_2_4,
                              prune_embeddings=prune_embeddings, quantize=quantize, qat=qat, epochs=epochs,
                              steps_per_epoch=steps_per_epoch, learning_rate=learning_rate, distill_alpha=distill_alpha,
                              temperature=temperature, log_dir=report_dir, structured=structured, validation_texts=data.texts,
                              verbose=verbose, say=say)
    staged: dict[str, pathlib.Path] = {}
    for variant in variants:
        say(f"exporting and measuring {variant.name} ...")
        path = _export_variant(run, variant, staging, name, command=command)
        staged[variant.name] = path
        # the SavedModel is what every server loads by default (the stock one too): it is the variant's metric and speed
        predict = _serving_function(path, tflite=False)
        metric = score(is_tagger, predict, data)
        savedmodel, tflite = version_sizes(path)
        speed = measure_speed(predict, data.texts[:64] or ["hello"])
        if variant.tflite is not None:  # model.tflite beside it, for --prefer_tflite_model
            tflite_predict = _serving_function(path, tflite=True)
            tflite_speed = measure_speed(tflite_predict, data.texts[:64] or ["hello"])
            variant.details = {**(variant.details or {}), "tflite_metric": score(is_tagger, tflite_predict, data),
                               "tflite_p50_ms_batch1": tflite_speed.p50_ms_batch1,
                               "tflite_throughput_batch32": tflite_speed.throughput_batch32}
        report.add(VariantRow(
            variant=variant.name, metric=metric, sparsity=float(variant.sparsity or 0.0), size_bytes=savedmodel.raw_bytes,
            gzip_bytes=savedmodel.gzip_bytes, tflite_bytes=tflite.raw_bytes if tflite else None,
            tflite_gzip_bytes=tflite.gzip_bytes if tflite else None, p50_ms_batch1=speed.p50_ms_batch1,
            throughput_batch32=speed.throughput_batch32, format=_format(path, variant), details=variant.details or {},
            parameters=parameter_count(variant.model), flops=model_flops(variant.model, report.mean_tokens),
        ))
    publish_variants(report, staged, max_drop=max_drop, publish=publish, model_base_path=model_base_path, name=name, say=say)
    report.save(report_dir)
    report.log_to_tensorboard(report_dir / "tensorboard")
    say(f"compression finished in {time.time() - started:.0f} s; report: {report_dir / 'report.json'}")
    return report


def version_sizes(version_dir: pathlib.Path) -> tuple[SizeFigures, SizeFigures | None]:
    """(SavedModel, model.tflite) raw and gzipped bytes of a version folder; the SavedModel is the folder
    without ``assets``, ``assets.extra`` and ``model.tflite``; ``None`` when there is no ``model.tflite``."""
    version_dir = pathlib.Path(version_dir)
    savedmodel = file_sizes(version_dir, exclude=("assets", "assets.extra", TFLITE_FILE))
    tflite = file_sizes(version_dir / TFLITE_FILE) if (version_dir / TFLITE_FILE).is_file() else None
    return savedmodel, tflite


def _format(version_dir: pathlib.Path, variant: Variant) -> str:
    """The model card's format ("savedmodel", "savedmodel+tflite" or "tflite"), else what the variant implies."""
    try:
        return str(json.loads((version_dir / "assets" / "llmos.json").read_text(encoding="utf-8"))["format"])
    except (OSError, ValueError, KeyError):
        return "tflite" if variant.tflite is not None else "savedmodel"
