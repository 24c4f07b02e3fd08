"""What compression needs from a finished run: the loaded model and its own data.

Pruning and quantization-aware training fine-tune, so they need the training
pipeline exactly as ``llmos train`` built it (same tokenizer, bucketing, loss);
full-integer quantization needs a representative sample of model inputs. Both
come from the run folder alone (its config names the data files), so
``llmos compress --run RUN_DIR`` needs no other argument.

Example::

    run = load_trained("runs/sample_bilstm")
    data = fine_tune_data(run)
    model.fit(data.dataset, steps_per_epoch=data.steps_per_epoch)
    representative_inputs(run, 100)[0]   # {"token_ids": int32 [1, T]}
"""
from __future__ import annotations

import pathlib
from dataclasses import dataclass
from typing import Any

import numpy as np

from llmos_tf._tf import tf, tf_keras
from llmos_tf.data.pipeline import BatchingPlan, count_batches, make_dataset, token_lengths
from llmos_tf.errors import RunError


def load_trained(run_dir: str | pathlib.Path):
    """The loaded run of ``run_dir``'s task: a :class:`TrainedRun` (classifier) or :class:`TrainedTagger` (NER)."""
    from llmos_tf.tasks import run_task
    from llmos_tf.tasks.multitask import MultitaskTask

    run_dir = pathlib.Path(run_dir)
    if not run_dir.is_dir():
        raise RunError(f"--run {run_dir}: no such run folder (train one with `llmos train CONFIG`)")
    task = run_task(run_dir)
    if issubclass(task, MultitaskTask):
        raise RunError(f"{run_dir}: compressing multitask runs is not supported; compress a single-task run")
    return task.load(run_dir)


def is_tagger(run) -> bool:
    from llmos_tf.tasks.tagging import TrainedTagger

    return isinstance(run, TrainedTagger)


@dataclass
class FineTuneData:
    """A repeating (inputs, labels) dataset with the run's loss and metric, for ``model.fit``."""

    dataset: tf.data.Dataset
    steps_per_epoch: int
    examples: int
    loss: Any
    metrics: list
    validation: tf.data.Dataset | None = None


def fine_tune_data(run, *, batch_size: int | None = None, steps_per_epoch: int | None = None, validation: bool = False) -> FineTuneData:
    """The run's training data through the same pipeline training used (shuffled, bucketed, repeating)."""
    cfg = run.config
    batch_size = batch_size or cfg.training.batch_size
    d = cfg.data
    if is_tagger(run):
        from llmos_tf.tasks.tagging import MaskedTokenAccuracy, tagger_loss
        from llmos_tf.tasks.tagging_data import encoding_stats, make_tagging_dataset, prepare_tagging_data, ragged_tag_ids, ragged_words

        data = prepare_tagging_data(d, cfg.seed)
        encoder = run.text_encoder()
        plan = BatchingPlan(batch_size=batch_size, max_length=run.max_length, bucketing=d.bucketing, bucket_boundaries=tuple(d.bucket_boundaries))
        words = ragged_words(data.train["tokens"].tolist())
        lengths, _ = encoding_stats(encoder, words)
        steps = count_batches(np.minimum(lengths, run.max_length), plan, training=True)
        ds = make_tagging_dataset(encoder, words, ragged_tag_ids(data.train["tags"].tolist(), run.labels), plan,
                                  training=True, seed=cfg.seed, shuffle_buffer=d.shuffle_buffer, repeat=True)
        val = None
        if validation:
            eval_plan = BatchingPlan(batch_size=batch_size, max_length=run.max_length, bucketing=False)
            val = make_tagging_dataset(encoder, ragged_words(data.validation["tokens"].tolist()),
                                       ragged_tag_ids(data.validation["tags"].tolist(), run.labels), eval_plan, training=False)
        # the tagger's own loss: a CRF tagger's sequence log-likelihood (under the transitions it was trained with), else
        # the masked token cross-entropy
        loss, metrics, examples = tagger_loss(run.model), [MaskedTokenAccuracy()], len(data.train)
    else:
        from llmos_tf.data.prepare import prepare_classification_data

        data = prepare_classification_data(d, cfg.seed)
        tokenizer = run.tokenizer()
        plan = BatchingPlan(batch_size=batch_size, max_length=run.max_length, bucketing=d.bucketing, bucket_boundaries=tuple(d.bucket_boundaries))
        texts = data.train["text"].tolist()
        steps = count_batches(token_lengths(texts, tokenizer, run.max_length), plan, training=True)
        features = run.architecture.features
        ds = make_dataset(texts, data.y_train, tokenizer, plan, training=True, seed=cfg.seed, shuffle_buffer=d.shuffle_buffer,
                          repeat=True, features=features)
        val = None
        if validation:
            eval_plan = BatchingPlan(batch_size=batch_size, max_length=run.max_length, bucketing=False)
            val = make_dataset(data.validation["text"].tolist(), data.y_validation, tokenizer, eval_plan, training=False, features=features)
        loss = tf_keras.losses.SparseCategoricalCrossentropy()
        metrics = [tf_keras.metrics.SparseCategoricalAccuracy(name="accuracy")]
        examples = len(texts)
    if steps_per_epoch:
        steps = min(steps, int(steps_per_epoch))
    if steps < 1:
        raise RunError(f"{run.run_dir}: the training data makes no batch; check data.train in its config")
    return FineTuneData(ds, steps, examples, loss, metrics, val)


def model_input_names(model) -> list[str]:
    """Input names of a model in the order Keras lists them (``token_ids`` for the BiLSTM)."""
    return [t.name.split(":")[0] for t in model.inputs]


def _as_named(model, inputs) -> dict[str, np.ndarray]:
    if isinstance(inputs, dict):
        return {k: np.asarray(v) for k, v in inputs.items()}
    names = model_input_names(model)
    return {names[0]: np.asarray(inputs)}


def representative_inputs(run, n: int) -> list[dict[str, np.ndarray]]:
    """``n`` training examples as model inputs, one per item (batch 1), for TFLite calibration."""
    cfg = run.config
    rng = np.random.default_rng(cfg.seed)
    if is_tagger(run):
        from llmos_tf.tasks.tagging_data import prepare_tagging_data

        frame = prepare_tagging_data(cfg.data, cfg.seed).train
        texts = [" ".join(tokens) for tokens in frame["tokens"]]
    else:
        from llmos_tf.data.prepare import prepare_classification_data

        texts = prepare_classification_data(cfg.data, cfg.seed).train["text"].astype(str).tolist()
    pick = rng.choice(len(texts), size=min(n, len(texts)), replace=False)
    return [model_inputs(run, [texts[i]]) for i in pick]


def model_inputs(run, texts) -> dict[str, np.ndarray]:
    """The model's inputs for raw texts, built by the run's own serving preprocessing."""
    from llmos_tf.export.writer import serving_module

    module = _module_cache.get(id(run))
    if module is None:
        module = _module_cache[id(run)] = serving_module(run, run.model)
    out = module.preprocess(tf.constant(list(texts)))
    names = set(model_input_names(run.model)) if not isinstance(run.model.input, dict) else set(run.model.input)
    return {k: v.numpy() for k, v in out.items() if k in names}


_module_cache: dict[int, Any] = {}
