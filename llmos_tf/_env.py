"""The one place that prepares the process before TensorFlow is imported.

Keras flavour: TF-MOT 0.8 can only wrap Keras 2 models, so every trainable model
is built with ``tf_keras``. ``TF_USE_LEGACY_KERAS=1`` makes ``tf.keras`` resolve
to ``tf_keras`` too, so third-party code that says ``tf.keras`` (TF-MOT,
TensorBoard's hparams callback) gets the same classes. keras-hub keeps importing
Keras 3 (``keras``) for its tokenizers and checkpoint loader; the two coexist in
one process.

Quiet start-up: importing TensorFlow prints about seven lines on stderr on a
CPU machine (oneDNN and CUDA notices twice, each behind absl's "All log messages
before absl::InitializeLog()" banner, then ``E`` lines for the failed ``cuInit``
and oneDNN's DT_BOOL fallback). None of it is actionable for a user who asked
for a prediction, and two of them look like errors. Two things silence them:

* ``TF_CPP_MIN_LOG_LEVEL=3`` hides TensorFlow's C++ log lines once its logging
  is set up (the ``E`` lines come later, at the first device or graph use);
* the banner and the notices printed while the shared libraries load are
  written by static initialisers before that variable is read, so the first
  ``import tensorflow`` runs with file descriptor 2 pointed at a temporary file
  (an import hook, :class:`_QuietTensorFlowImport`). If the import fails, what
  was captured is written back to stderr, so a broken installation still says why.

Both apply only when the user has not set ``TF_CPP_MIN_LOG_LEVEL`` themselves;
``llmos --verbose`` (:func:`set_verbose`) turns them off and lets TensorFlow
speak. This module does not import TensorFlow, so ``llmos --help`` stays fast.
"""
from __future__ import annotations

import contextlib
import importlib.abc
import importlib.machinery
import os
import sys
import tempfile
from typing import Iterator

# The user's own choice, read before we set a default: it always wins.
USER_LOG_LEVEL: str | None = os.environ.get("TF_CPP_MIN_LOG_LEVEL")
QUIET_LOG_LEVEL = "3"  # 2 still shows the E lines (cuInit, oneDNN DT_BOOL)

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", QUIET_LOG_LEVEL)
os.environ.setdefault("KERAS_BACKEND", "tensorflow")


@contextlib.contextmanager
def native_stderr_captured() -> Iterator[None]:
    """Point file descriptor 2 at a temporary file; replay it to stderr only if the body raises.

    C++ code writes to the descriptor, not to ``sys.stderr``, so swapping the
    Python object would not catch it.
    """
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError, AttributeError):  # no real descriptor 2 (some embedded interpreters)
        yield
        return
    with tempfile.TemporaryFile() as capture:
        os.dup2(capture.fileno(), 2)
        try:
            yield
        except BaseException:
            _restore(saved)
            capture.seek(0)
            captured = capture.read()
            if captured:
                os.write(2, captured)
            raise
        else:
            _restore(saved)


def _restore(saved: int) -> None:
    try:
        sys.stderr.flush()
    except (OSError, ValueError):
        pass
    os.dup2(saved, 2)
    os.close(saved)


class _QuietLoader(importlib.abc.Loader):
    """Runs the real loader of ``tensorflow`` with native stderr captured."""

    def __init__(self, loader: importlib.abc.Loader) -> None:
        self._loader = loader

    def create_module(self, spec):
        return self._loader.create_module(spec)

    def exec_module(self, module) -> None:
        # the module keeps the real loader: importlib.resources and friends look at it
        module.__loader__ = self._loader
        if module.__spec__ is not None:
            module.__spec__.loader = self._loader
        with native_stderr_captured():
            self._loader.exec_module(module)


class _QuietTensorFlowImport(importlib.abc.MetaPathFinder):
    """An import hook for the first ``import tensorflow`` while quiet mode is on."""

    active = True

    def find_spec(self, fullname, path, target=None):
        if fullname != "tensorflow" or not self.active:
            return None
        spec = importlib.machinery.PathFinder.find_spec(fullname, path)
        if spec is None or spec.loader is None:
            return None
        spec.loader = _QuietLoader(spec.loader)
        return spec


_HOOK = _QuietTensorFlowImport()
_HOOK.active = USER_LOG_LEVEL is None
if not any(isinstance(f, _QuietTensorFlowImport) for f in sys.meta_path):
    sys.meta_path.insert(0, _HOOK)


def quiet() -> bool:
    """True when TensorFlow's start-up logs are being silenced."""
    return _HOOK.active


def set_verbose(verbose: bool) -> None:
    """The ``llmos`` command's ``--verbose``: let TensorFlow print its logs, or keep them quiet.

    Quiet also raises TensorFlow's Python logger to ERROR, so warnings meant for
    TensorFlow developers ("Callback method ... is slow compared to the batch
    time" on tiny batches) stay out of a user's terminal; the command's own
    messages and Python ``warnings`` are not affected. Only the CLI calls this:
    importing :mod:`llmos_tf` in a notebook leaves the host's loggers alone. The
    C++ part takes effect only before TensorFlow is imported; none of it overrides
    a ``TF_CPP_MIN_LOG_LEVEL`` the user set in the environment.
    """
    if USER_LOG_LEVEL is not None:
        return
    import logging

    os.environ["TF_CPP_MIN_LOG_LEVEL"] = "0" if verbose else QUIET_LOG_LEVEL
    _HOOK.active = not verbose
    logging.getLogger("tensorflow").setLevel(logging.NOTSET if verbose else logging.ERROR)
