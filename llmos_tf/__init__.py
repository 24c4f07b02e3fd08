"""llmos_tf: labelled text in, served language models out.

Importing the package selects Keras 2 (``tf_keras``) for TensorFlow before
anything imports TensorFlow (see :mod:`llmos_tf._env`); TensorFlow itself is
imported lazily by the modules that need it, so the notebook API below is
loaded on first use (``llmos_tf.train`` → :mod:`llmos_tf.api`).

Example::

    import llmos_tf
    run = llmos_tf.train("configs/sample_bilstm.yaml", training__epochs=2)
    run.history, run.evaluate("data/sample/sentiment_test.csv")
"""
from llmos_tf import _env  # noqa: F401

__version__ = "0.1.0"

_API = ("train", "load_run", "Run", "Evaluation", "resolve_config", "read_history", "hparams_frame", "entities_html")
__all__ = list(_API)


def __getattr__(name: str):
    if name == "entities_html":
        from llmos_tf.display import entities_html

        return entities_html
    if name in _API:
        from llmos_tf import api

        return getattr(api, name)
    raise AttributeError(f"module 'llmos_tf' has no attribute {name!r}")
