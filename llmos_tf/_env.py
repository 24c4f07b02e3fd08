"""The one place that chooses the Keras flavour, before TensorFlow is imported.

TF-MOT 0.8 can only wrap Keras 2 models, so every trainable model is built with
``tf_keras``. ``TF_USE_LEGACY_KERAS=1`` makes ``tf.keras`` resolve to ``tf_keras``
too, so third-party code that says ``tf.keras`` (TF-MOT, TensorBoard's hparams
callback) gets the same classes. keras-hub keeps importing Keras 3 (``keras``)
for its tokenizers and checkpoint loader; the two coexist in one process.

This module does not import TensorFlow, so ``llmos --help`` stays fast.
"""
import os

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")
