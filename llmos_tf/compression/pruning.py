"""Magnitude pruning of a trained run with TF-MOT, while fine-tuning on its own data.

Every layer with a weight TF-MOT can prune is wrapped in ``PruneLowMagnitude``
(``tfmot.sparsity.keras.prune_low_magnitude``) with one ``PolynomialDecay``
schedule; the rest are left alone and named, with the reason, in the result.

* BiLSTM: ``Embedding`` (unless ``prune_embeddings=False``), each
  ``Bidirectional(LSTM)`` through :class:`PrunableBidirectional` (TF-MOT's
  registry knows ``LSTM`` but not the ``Bidirectional`` wrapper around it; the
  subclass names the four kernels of its two LSTMs as prunable weights), the
  ``Dense`` head.
* BERT: the encoder is cloned layer by layer; its blocks expose the attention
  projections and feed-forward kernels through ``get_prunable_weights`` (see
  :mod:`llmos_tf.models.bert`), the embeddings their token table.

The schedule comes from the data: pruning starts at step 0, reaches the target
at ~70% of the fine-tuning steps (the rest fine-tunes at the final sparsity) and
updates the masks about 10 times on the way, with the last update landing
exactly on ``end_step``. With ``structured_2_4`` the masks keep 2 of every 4
weights along a kernel's input axis instead (TF-MOT's ``sparsity_m_by_n``;
rank-3 attention kernels through :class:`PruneLowMagnitudeMbyN`). The fine-tune
may learn from the dense model as well as the labels (``distill_alpha``, see
:mod:`.dense_teacher`). ``UpdatePruningStep`` drives it and ``PruningSummaries``
writes the sparsity curves to TensorBoard. ``strip_pruning`` removes the
wrappers at the end: the result is a plain tf_keras model whose zeros survive
saving.

Example::

    result = prune_run(run, target_sparsity=0.8, epochs=1)
    result.overall_sparsity          # ~0.8 of the prunable weights
    [(r.layer, r.sparsity) for r in result.layers]
"""
from __future__ import annotations

import pathlib
from dataclasses import dataclass, field

import numpy as np

from llmos_tf._tf import tf, tf_keras
from llmos_tf.errors import ConfigError

import tensorflow_model_optimization as tfmot  # noqa: E402  (after llmos_tf._tf picked tf_keras)

from tensorflow_model_optimization.python.core.sparsity.keras import pruning_impl, pruning_utils  # noqa: E402
from tensorflow_model_optimization.python.core.sparsity.keras.pruning_wrapper import PruneLowMagnitude  # noqa: E402

sparsity = tfmot.sparsity.keras


@tf_keras.saving.register_keras_serializable(package="llmos_tf")
class PrunableBidirectional(tf_keras.layers.Bidirectional, sparsity.PrunableLayer):
    """``Bidirectional`` whose LSTM/GRU kernels TF-MOT may prune (input and recurrent, both directions)."""

    def get_prunable_weights(self):
        out = []
        for rnn in (self.forward_layer, self.backward_layer):
            out += [rnn.cell.kernel, rnn.cell.recurrent_kernel]
        return out


def einsum_input_axes(layer) -> dict[str, int]:
    """Kernel name → how many leading axes of that ``EinsumDense`` kernel meet the input.

    Attention projections keep rank-3 kernels: ``[hidden, heads, head_dim]`` for query, key and
    value (one input axis), ``[heads, head_dim, hidden]`` for the output (two). Read as a matrix
    ``[inputs, outputs]`` they are ordinary dense kernels, which is what 2:4 sparsity needs."""
    axes = {}
    for sub in layer._flatten_layers(include_self=True, recursive=True):
        if not isinstance(sub, tf_keras.layers.EinsumDense) or getattr(sub, "kernel", None) is None:
            continue
        operands, output = sub.equation.split("->")
        inputs, kernel = operands.split(",")
        contracted = [c for c in kernel if c in inputs and c not in output]
        if contracted and kernel.startswith("".join(contracted)):
            axes[sub.kernel.name] = len(contracted)
    return axes


def _as_matrix_shape(shape, input_axes: int) -> list[int]:
    return [int(np.prod(shape[:input_axes])), int(np.prod(shape[input_axes:]))]


class _MbyNPruning(pruning_impl.Pruning):
    """TF-MOT's m:n masks (groups along the input axis of rank-2/4 kernels), and the same for rank-3
    einsum kernels, computed on their ``[inputs, outputs]`` matrix view and reshaped back."""

    def __init__(self, *args, input_axes: dict[str, int], **kwargs):
        super().__init__(*args, **kwargs)
        self._input_axes = input_axes

    def _update_mask_sparsity_m_by_n(self, weights, m_by_n=(2, 4)):
        k = self._input_axes.get(getattr(weights, "name", None)) if weights.shape.rank == 3 else None
        if k is None:
            return super()._update_mask_sparsity_m_by_n(weights, m_by_n)
        matrix = tf.reshape(weights, _as_matrix_shape(weights.shape.as_list(), k))
        mask = pruning_utils.generate_m_by_n_mask(pruning_utils.weights_rearrange(matrix), m_by_n)
        return tf.reshape(pruning_utils.m_by_n_sparsity_mask_prepare(mask, matrix.shape), weights.shape)


class PruneLowMagnitudeMbyN(PruneLowMagnitude):
    """``PruneLowMagnitude`` whose 2:4 masks also cover rank-3 attention kernels (see :class:`_MbyNPruning`)."""

    def build(self, input_shape):
        super().build(input_shape)
        self.pruning_obj = _MbyNPruning(
            training_step_fn=lambda: self.pruning_step, pruning_vars=self.pruning_vars, pruning_schedule=self.pruning_schedule,
            block_size=self.block_size, sparsity_m_by_n=self.sparsity_m_by_n, block_pooling_type=self.block_pooling_type,
            input_axes=einsum_input_axes(self.layer))


@dataclass
class LayerSparsity:
    """Sparsity of one weight tensor after pruning."""

    layer: str
    weight: str
    params: int
    zeros: int
    sparsity: float


@dataclass
class SkippedLayer:
    layer: str
    params: int
    reason: str


@dataclass
class PruneResult:
    model: tf_keras.Model  # stripped: plain layers, zeros in the weights
    layers: list[LayerSparsity]
    skipped: list[SkippedLayer]
    overall_sparsity: float
    schedule: dict = field(default_factory=dict)
    history: dict = field(default_factory=dict)


def schedule_for(total_steps: int, target_sparsity: float, *, updates: int = 10, end_fraction: float = 0.7) -> dict:
    """``PolynomialDecay`` arguments for ``total_steps`` of fine-tuning (begin 0, end on an update step)."""
    if total_steps < 2:
        raise ConfigError(f"pruning needs at least 2 fine-tuning steps, got {total_steps}; raise --epochs or --steps_per_epoch")
    end = max(1, int(total_steps * end_fraction))
    frequency = max(1, end // updates)
    end = min((end // frequency) * frequency, total_steps - 1)
    end -= end % frequency
    return {"initial_sparsity": 0.0, "final_sparsity": float(target_sparsity), "begin_step": 0, "end_step": int(end), "frequency": int(frequency)}


def _prunable_weight_names(layer) -> list[str] | None:
    """Names of the weights TF-MOT would prune in ``layer``, or None if it cannot wrap it."""
    if isinstance(layer, sparsity.PrunableLayer) or hasattr(layer, "get_prunable_weights"):
        return [w.name for w in layer.get_prunable_weights()]
    from tensorflow_model_optimization.python.core.sparsity.keras.prune_registry import PruneRegistry

    if PruneRegistry.supports(layer):
        return [w.name for w in PruneRegistry.make_prunable(layer).get_prunable_weights()] if layer.built else []
    return None


def _why_not(layer, prune_embeddings: bool, structured_2_4: bool) -> str | None:
    """Reason a layer with weights stays dense (None: prune it)."""
    if isinstance(layer, tf_keras.layers.Bidirectional):
        return None
    if not prune_embeddings and (isinstance(layer, tf_keras.layers.Embedding) or "embedding" in layer.name):
        return "embeddings excluded (--no_prune_embeddings)"
    names = _prunable_weight_names(layer)
    if names is None:
        return f"TF-MOT has no pruning rule for {type(layer).__name__} and it has no get_prunable_weights()"
    if not names:
        return "no prunable weights (normalisation, bias-only or weight-free layer)"
    if structured_2_4:
        return _why_not_2_4(layer)
    return None


def _why_not_2_4(layer) -> str | None:
    """2:4 groups run along a kernel's input axis, so that axis (flattened) must split into fours."""
    einsum = einsum_input_axes(layer)
    for w in _weights_of(layer):
        shape = w.shape.as_list()
        if len(shape) == 3 and w.name in einsum:
            inputs = _as_matrix_shape(shape, einsum[w.name])[0]
        elif len(shape) == 2:
            inputs = shape[0]
        elif len(shape) == 4:
            continue
        else:
            return f"2:4 sparsity needs rank-2, rank-4 or einsum rank-3 kernels; {w.name} has shape {shape}"
        if inputs % 4:
            return f"2:4 sparsity needs an input size divisible by 4; {w.name} has shape {shape} ({inputs} inputs)"
    return None


def _weights_of(layer):
    if isinstance(layer, tf_keras.layers.Bidirectional):
        return PrunableBidirectional.get_prunable_weights(layer)
    if hasattr(layer, "get_prunable_weights"):
        return layer.get_prunable_weights()
    from tensorflow_model_optimization.python.core.sparsity.keras.prune_registry import PruneRegistry

    return PruneRegistry.make_prunable(layer).get_prunable_weights() if PruneRegistry.supports(layer) else []


def _as_prunable_bidirectional(layer: tf_keras.layers.Bidirectional) -> PrunableBidirectional:
    clone = PrunableBidirectional.from_config(layer.get_config())
    clone.build(layer.input_shape)
    clone.set_weights(layer.get_weights())
    return clone


def copy_model(model: tf_keras.Model) -> tf_keras.Model:
    """A copy with its own layers and weights: TF-MOT's wrappers wrap layers *in place*, and the
    dense model must stay dense (it is the report's reference row)."""
    copy = tf_keras.models.clone_model(model)
    copy.set_weights(model.get_weights())
    return copy


def add_pruning(model: tf_keras.Model, schedule: dict, *, prune_embeddings: bool = True, structured_2_4: bool = False
                ) -> tuple[tf_keras.Model, list[SkippedLayer]]:
    """Clone ``model`` with every prunable layer wrapped (nested functional models included)."""
    skipped: list[SkippedLayer] = []
    params = {"pruning_schedule": sparsity.PolynomialDecay(**schedule)}
    if structured_2_4:
        params = {"pruning_schedule": sparsity.ConstantSparsity(0.5, begin_step=0, end_step=schedule["end_step"], frequency=schedule["frequency"]),
                  "sparsity_m_by_n": (2, 4)}
    wrapper = PruneLowMagnitudeMbyN if structured_2_4 else sparsity.prune_low_magnitude

    def wrap(layer):
        if isinstance(layer, tf_keras.Model):
            return tf_keras.models.clone_model(layer, clone_function=wrap)
        if not layer.weights:
            return layer
        reason = _why_not(layer, prune_embeddings, structured_2_4)
        if reason:
            skipped.append(SkippedLayer(layer.name, int(sum(np.prod(w.shape) for w in layer.weights)), reason))
            return layer
        if isinstance(layer, tf_keras.layers.Bidirectional) and not isinstance(layer, PrunableBidirectional):
            layer = _as_prunable_bidirectional(layer)
        return wrapper(layer, **params)

    with sparsity.prune_scope():
        pruned = tf_keras.models.clone_model(model, clone_function=wrap)
    return pruned, skipped


def strip(model: tf_keras.Model) -> tf_keras.Model:
    """``strip_pruning`` plus :class:`PrunableBidirectional` back to a plain ``Bidirectional``."""
    stripped = sparsity.strip_pruning(model)

    def plain(layer):
        if isinstance(layer, tf_keras.Model):
            return tf_keras.models.clone_model(layer, clone_function=plain)
        if isinstance(layer, PrunableBidirectional):
            clone = tf_keras.layers.Bidirectional.from_config(layer.get_config())
            clone.build(layer.input_shape)
            clone.set_weights(layer.get_weights())
            return clone
        return layer

    return tf_keras.models.clone_model(stripped, clone_function=plain)


def _all_layers(model):
    for layer in model.layers:
        if isinstance(layer, tf_keras.Model):
            yield from _all_layers(layer)
        else:
            yield layer


def weight_sparsity(model: tf_keras.Model) -> list[LayerSparsity]:
    """Fraction of exact zeros in every prunable weight (kernels, embeddings) of a plain model."""
    rows = []
    for layer in _all_layers(model):
        inner = layer.layer if isinstance(layer, PruneLowMagnitude) else layer
        if not inner.weights:
            continue
        try:
            weights = _weights_of(inner)
        except (ValueError, AttributeError):
            continue
        for w in weights:
            value = w.numpy()
            zeros = int(np.sum(value == 0))
            rows.append(LayerSparsity(inner.name, w.name, int(value.size), zeros, zeros / max(1, value.size)))
    return rows


def prune_run(run, *, target_sparsity: float = 0.8, epochs: int = 1, steps_per_epoch: int | None = None, structured_2_4: bool = False,
              prune_embeddings: bool = True, learning_rate: float | None = None, distill_alpha: float | None = None,
              temperature: float = 2.0, log_dir: str | pathlib.Path | None = None, verbose: int = 0) -> PruneResult:
    """Prune ``run.model`` to ``target_sparsity`` while fine-tuning ``epochs`` on the run's training data.

    The learning rate (default: half the run's peak for BERT, a fifth for the
    BiLSTM) decays linearly to zero over the fine-tune. With ``distill_alpha``
    the dense model teaches its pruned copy (:mod:`.dense_teacher`): the gold
    labels get that weight, the dense model's soft targets the rest."""
    from llmos_tf.compression.run_data import fine_tune_data
    from llmos_tf.training.distribute import check_compression_strategy

    check_compression_strategy(tf.distribute.get_strategy(), "prune")  # the strategy the pruned copy is built and fine-tuned under
    if not 0.0 < target_sparsity < 1.0:
        raise ConfigError(f"target_sparsity: expected a fraction between 0 and 1 (exclusive), got {target_sparsity}")
    if epochs < 1:
        raise ConfigError(f"--epochs: pruning fine-tunes for at least 1 epoch, got {epochs}")
    data = fine_tune_data(run, steps_per_epoch=steps_per_epoch)
    total = data.steps_per_epoch * epochs
    schedule = schedule_for(total, target_sparsity)
    pruned, skipped = add_pruning(copy_model(run.model), schedule, prune_embeddings=prune_embeddings, structured_2_4=structured_2_4)
    wrapped = [l for l in _all_layers(pruned) if isinstance(l, PruneLowMagnitude)]
    if not wrapped:
        raise ConfigError("nothing to prune: " + "; ".join(f"{s.layer}: {s.reason}" for s in skipped))
    # a fine-tuning learning rate: a fraction of the one the run trained with (its peak)
    lr = learning_rate or float(run.config.training.learning_rate) * (0.5 if run.config.architecture == "bert" else 0.2)
    if lr <= 0:
        raise ConfigError(f"--learning_rate: expected a positive number, got {lr}")
    optimizer = tf_keras.optimizers.Adam(tf_keras.optimizers.schedules.PolynomialDecay(lr, total, end_learning_rate=0.0), clipnorm=1.0)
    trainee = pruned
    if distill_alpha is not None:
        from llmos_tf.compression.dense_teacher import TeacherGuidedFineTune

        trainee = TeacherGuidedFineTune(pruned, run.model, data.loss, alpha=distill_alpha, temperature=temperature, name="guided")
        trainee.compile(optimizer=optimizer, metrics=data.metrics)
    else:
        pruned.compile(optimizer=optimizer, loss=data.loss, metrics=data.metrics)
    callbacks: list = [sparsity.UpdatePruningStep()]
    if log_dir is not None:
        callbacks.append(sparsity.PruningSummaries(log_dir=str(log_dir), update_freq=max(1, total // 20)))
    history = trainee.fit(data.dataset, epochs=epochs, steps_per_epoch=data.steps_per_epoch, callbacks=callbacks, verbose=verbose)
    stripped = strip(pruned)
    pruned_names = {(l.layer.name if isinstance(l, PruneLowMagnitude) else l.name) for l in wrapped}
    rows = [r for r in weight_sparsity(stripped) if r.layer in pruned_names]
    params = sum(r.params for r in rows)
    overall = sum(r.zeros for r in rows) / params if params else 0.0
    return PruneResult(stripped, rows, skipped, float(overall), schedule, {k: [float(x) for x in v] for k, v in history.history.items()})


def save_cached(folder: str | pathlib.Path, settings: dict, result: PruneResult) -> None:
    """Keep a finished pruning (the slow part) so a later failure (conversion, export) does not redo it."""
    import dataclasses
    import json
    import shutil

    folder = pathlib.Path(folder)
    tmp = folder.with_name(folder.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    result.model.save(tmp / "model.keras")
    state = {"settings": settings, "layers": [dataclasses.asdict(r) for r in result.layers],
             "skipped": [dataclasses.asdict(r) for r in result.skipped], "overall_sparsity": result.overall_sparsity,
             "schedule": result.schedule, "history": result.history}
    (tmp / "pruning.json").write_text(json.dumps(state, indent=2, default=str))
    shutil.rmtree(folder, ignore_errors=True)
    tmp.rename(folder)


def load_cached(folder: str | pathlib.Path, settings: dict) -> PruneResult | None:
    """The cached pruning for exactly these settings, or None."""
    import json

    folder = pathlib.Path(folder)
    state_path = folder / "pruning.json"
    if not state_path.is_file() or not (folder / "model.keras").is_file():
        return None
    state = json.loads(state_path.read_text())
    if state.get("settings") != json.loads(json.dumps(settings, default=str)):
        return None
    import llmos_tf.models.bert  # noqa: F401  (registers custom layers)
    import llmos_tf.models.heads  # noqa: F401
    import llmos_tf.models.layers  # noqa: F401

    model = tf_keras.models.load_model(folder / "model.keras", compile=False)
    return PruneResult(model, [LayerSparsity(**r) for r in state["layers"]], [SkippedLayer(**r) for r in state["skipped"]],
                       state["overall_sparsity"], state["schedule"], state["history"])
