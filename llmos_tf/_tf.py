"""TensorFlow and tf_keras, imported after :mod:`llmos_tf._env` has chosen Keras 2."""
from llmos_tf import _env  # noqa: F401  (must run before TensorFlow is imported)

import tensorflow as tf  # noqa: E402
import tf_keras  # noqa: E402

__all__ = ["tf", "tf_keras"]
