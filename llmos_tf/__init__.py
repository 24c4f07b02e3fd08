"""llmos_tf: labelled text in, served language models out.

Importing the package selects Keras 2 (``tf_keras``) for TensorFlow before
anything imports TensorFlow (see :mod:`llmos_tf._env`); TensorFlow itself is
imported lazily by the modules that need it.
"""
from llmos_tf import _env  # noqa: F401

__version__ = "0.1.0"
