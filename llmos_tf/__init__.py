"""llmos_tf: labelled text in, served language models out.

Importing the package selects Keras 2 (``tf_keras``) for TensorFlow before
anything imports TensorFlow; see :mod:`llmos_tf._tf`.
"""
from llmos_tf import _tf  # noqa: F401  (sets TF_USE_LEGACY_KERAS first)

__version__ = "0.1.0"
