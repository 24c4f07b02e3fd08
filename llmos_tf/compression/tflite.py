"""Post-training TFLite conversion of a token-id model (the tokenizer stays in TensorFlow).

Modes (TFLite's post-training quantization recipes):

* ``dynamic``: weights stored as int8, activations float, quantized on the fly;
* ``int8``: weights *and* activations int8, with activation ranges calibrated on
  a representative sample of the run's training inputs; ops without an int8
  kernel fall back to float (the "integer with float fallback" recipe: the
  model's inputs are token ids, which are not quantizable);
* ``float16``: weights stored as float16;
* ``float32``: no quantization (a reference, and what QAT models use after
  their own fake-quant nodes).

Shapes: BERT converts with a dynamic ``[batch, length]`` signature. A Keras
LSTM is a ``while`` loop over TensorList ops that TFLite builtins can only run
when the shapes are static, so when the dynamic conversion fails for that
reason the model is converted at ``[1, max_length]`` (the servable pads each
text to ``max_length`` and runs rows one by one). SELECT_TF_OPS are never used:
the Python TFLite interpreter here cannot run them, and neither can a phone
without the Flex delegate; the conversion fails with the converter's message
instead.

Example::

    conv = convert_to_tflite(model, "dynamic", example_inputs=[{"token_ids": ids}], max_length=64)
    pathlib.Path("model.tflite").write_bytes(conv.content)
"""
from __future__ import annotations

import re
import shutil
import tempfile
import warnings
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

from llmos_tf._tf import tf, tf_keras
from llmos_tf.errors import ConfigError, RunError

MODES = ("dynamic", "int8", "float16", "float32")
SIGNATURE = "serving_default"
OUTPUT = "probabilities"


@dataclass
class TFLiteConversion:
    content: bytes
    mode: str
    static_shape: list[int] | None  # [1, max_length] for LSTM models, None when dynamic
    select_tf_ops: bool = False
    notes: list[str] = field(default_factory=list)


def input_specs(model: tf_keras.Model, shape: Sequence[int | None]) -> dict[str, tf.TensorSpec]:
    """One int32 spec per model input, keyed by the input's name."""
    if isinstance(model.input, dict):
        return {k: tf.TensorSpec(shape, tf.int32, name=k) for k in model.input}
    name = model.inputs[0].name.split(":")[0]
    return {name: tf.TensorSpec(shape, tf.int32, name=name)}


class _Exportable(tf.Module):
    def __init__(self, model: tf_keras.Model):
        super().__init__()
        self.model = model


def _saved_model(model: tf_keras.Model, shape: Sequence[int | None], folder: str) -> None:
    specs = input_specs(model, shape)
    single = not isinstance(model.input, dict)

    def call(**inputs):
        x = next(iter(inputs.values())) if single else inputs
        return {OUTPUT: tf.cast(model(x, training=False), tf.float32)}

    module = _Exportable(model)
    module.serve = tf.function(call, input_signature=None).get_concrete_function(**specs)
    tf.saved_model.save(module, folder, signatures={SIGNATURE: module.serve})


def _pad(inputs: dict[str, np.ndarray], length: int) -> dict[str, np.ndarray]:
    out = {}
    for k, v in inputs.items():
        v = np.asarray(v, np.int32)[:, :length]
        out[k] = np.pad(v, [[0, 0], [0, length - v.shape[1]]])
    return out


def _converter(folder: str, mode: str, representative: Sequence[dict[str, np.ndarray]] | None, static_length: int | None):
    converter = tf.lite.TFLiteConverter.from_saved_model(folder)
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    if mode == "dynamic":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    elif mode == "float16":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.target_spec.supported_types = [tf.float16]
    elif mode == "int8":
        if not representative:
            raise ConfigError("int8 quantization needs a representative sample of the training inputs")
        converter.optimizations = [tf.lite.Optimize.DEFAULT]

        def samples():
            for item in representative:
                yield _pad(item, static_length) if static_length else {k: np.asarray(v, np.int32) for k, v in item.items()}

        converter.representative_dataset = samples
    return converter


# Ops kept float in int8 models (selective quantization): masked pooling writes -1e9 into padded
# steps before its max (SELECT_V2 → REDUCE_MAX), and one int8 scale cannot cover -1e9 and the
# activations; its mean divides by a mask count that int8 DIV can round to 0.
FLOAT_OPS_IN_INT8 = ("DIV", "SELECT_V2", "REDUCE_MAX")
# The same -1e9 problem inside attention: Keras' masked softmax adds -1e9 to the scores of padded
# keys, so an int8 ``add`` (and the ``Softmax`` after it) would spend its whole range on the mask and
# round every real score to one bucket. Those two nodes per attention layer stay float; found by
# name in the float model (fixture BERT: 0.91 → 1.0 agreement with the float model).
FLOAT_NODES_IN_INT8 = re.compile(r"/softmax/(add|Softmax)$")


def float_nodes_for_int8(float_model: bytes) -> list[str]:
    """Names of the tensors that must stay float in a full-integer model (see FLOAT_NODES_IN_INT8)."""
    interpreter = make_interpreter(float_model)
    return [d["name"] for d in interpreter.get_tensor_details() if FLOAT_NODES_IN_INT8.search(d["name"])]


def _convert(converter, mode: str, float_converter=None) -> bytes:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if mode != "int8":
            return converter.convert()
        nodes = float_nodes_for_int8(float_converter.convert()) if float_converter is not None else []
        # TFLite's selective quantization: everything int8 except the denylisted ops and nodes
        debugger = tf.lite.experimental.QuantizationDebugger(
            converter=converter, debug_dataset=converter.representative_dataset,
            debug_options=tf.lite.experimental.QuantizationDebugOptions(
                denylisted_ops=list(FLOAT_OPS_IN_INT8), denylisted_nodes=nodes or None))
        return debugger.get_nondebug_quantized_model()


def has_recurrent_layers(model: tf_keras.Model) -> bool:
    """LSTM/GRU anywhere in the model (inside ``Bidirectional`` or a nested model too)."""
    for layer in model.layers:
        if isinstance(layer, tf_keras.Model) and has_recurrent_layers(layer):
            return True
        inner = getattr(layer, "forward_layer", layer)
        if isinstance(inner, tf_keras.layers.RNN):
            return True
    return False


def _needs_static_shapes(err: Exception) -> bool:
    text = str(err)
    return "tensor list" in text.lower() or "TensorList" in text or "FlexTensorList" in text


def convert_to_tflite(model: tf_keras.Model, mode: str = "dynamic", *, example_inputs: Sequence[dict[str, np.ndarray]],
                      representative: Sequence[dict[str, np.ndarray]] | None = None, max_length: int | None = None) -> TFLiteConversion:
    """Convert ``model`` (token-id inputs → probabilities) to TFLite and check that the file runs."""
    if mode not in MODES:
        raise ConfigError(f"TFLite mode {mode!r}: valid modes are {', '.join(MODES)}")
    notes: list[str] = []
    folder = tempfile.mkdtemp(prefix="llmos-tflite-")
    try:
        if mode == "int8" and has_recurrent_layers(model):
            raise ConfigError(
                "int8 (full-integer) is not available for LSTM models: TFLite's int8 calibrator crashes (SIGSEGV) on the "
                "Keras LSTM's while loop in TF 2.21, and unrolling the loop changes the masked results; use --quantize "
                "dynamic (int8 weights) or float16")
        # recurrent layers go straight to static shapes (a dynamic attempt would only fail, slowly)
        static_length = int(max_length) if max_length and has_recurrent_layers(model) else None
        content = None
        if static_length is None:
            _saved_model(model, [None, None], folder)
            try:
                content = _convert(_converter(folder, mode, representative, None), mode, _converter(folder, "float32", None, None))
            except Exception as err:  # the converter raises ConverterError and friends
                if not _needs_static_shapes(err) or not max_length:
                    raise RunError(f"TFLite conversion ({mode}) failed: {str(err).strip().splitlines()[-1][:500]}") from None
                static_length = int(max_length)
                shutil.rmtree(folder, ignore_errors=True)
                folder = tempfile.mkdtemp(prefix="llmos-tflite-")
        if content is None:
            _saved_model(model, [1, static_length], folder)
            try:
                content = _convert(_converter(folder, mode, representative, static_length), mode,
                                   _converter(folder, "float32", None, static_length))
            except Exception as err2:
                raise RunError(f"TFLite conversion ({mode}, static shape [1, {static_length}]) failed: "
                               f"{str(err2).strip().splitlines()[-1][:500]}") from None
            notes.append(f"static input shape [1, {static_length}]: the LSTM loop needs static shapes for TFLite builtins "
                         "(no SELECT_TF_OPS); texts are padded to max_length and run one at a time")
        if mode == "int8":
            notes.append("int8 weights and activations (calibrated on training texts); float fallback for ops without int8 "
                         f"kernels and for {', '.join(FLOAT_OPS_IN_INT8)} and the masked attention softmax (selective quantization)")
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    conversion = TFLiteConversion(content, mode, [1, static_length] if static_length else None, False, notes)
    run_tflite(conversion.content, example_inputs[:1])  # a file that does not run is not a variant
    return conversion


def make_interpreter(content: bytes | None = None, path: str | None = None, threads: int | None = None):
    """A TFLite interpreter (tf.lite's; its deprecation warning in favour of ai_edge_litert is silenced)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        interpreter = tf.lite.Interpreter(model_content=content, model_path=path, num_threads=threads)
        try:
            interpreter.allocate_tensors()
        except RuntimeError as err:
            if "XNNPACK" not in str(err):
                raise
            # XNNPACK cannot take some int8 graphs (e.g. an unrolled LSTM); TFLite's own kernels can
            interpreter = tf.lite.Interpreter(
                model_content=content, model_path=path, num_threads=threads,
                experimental_op_resolver_type=tf.lite.experimental.OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
            interpreter.allocate_tensors()
        return interpreter


class TFLiteRunner:
    """Runs a converted model on any batch: whole batches when its shape is dynamic, row by row when static."""

    def __init__(self, interpreter):
        self.interpreter = interpreter
        self.runner = interpreter.get_signature_runner(SIGNATURE)
        details = self.runner.get_input_details()
        self.input_names = sorted(details)
        shape = list(details[self.input_names[0]]["shape_signature"])
        self.static_shape = None if -1 in shape else shape

    def __call__(self, inputs: dict[str, np.ndarray]) -> np.ndarray:
        inputs = {k: np.asarray(inputs[k], np.int32) for k in self.input_names}
        if self.static_shape is None:
            return np.asarray(self.runner(**inputs)[OUTPUT], np.float32)
        length = self.static_shape[1]
        padded = _pad(inputs, length)
        rows = next(iter(padded.values())).shape[0]
        return np.concatenate([self.runner(**{k: v[i:i + 1] for k, v in padded.items()})[OUTPUT] for i in range(rows)], axis=0).astype(np.float32)


def run_tflite(content: bytes, batches: Sequence[dict[str, np.ndarray]]) -> list[np.ndarray]:
    runner = TFLiteRunner(make_interpreter(content))
    return [runner(b) for b in batches]
