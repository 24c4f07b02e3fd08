"""TF Serving's model base path layout: ``<base>/<name>/<version>/``.

A version folder appears by ``os.rename`` of a finished temporary folder in the
same parent, so a server polling the base path never sees half a model.
Temporary folders start with ``.`` (TF Serving and ``llmos serve`` only load
all-digit folder names).
"""
from __future__ import annotations

import contextlib
import os
import pathlib
import re
import shutil
import tempfile
from typing import Iterator

from llmos_tf.errors import RunError

NAME_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$")


def check_model_name(name: str) -> str:
    if not NAME_RE.match(name or ""):
        raise RunError(f"--name: {name!r} is not a valid model name (letters, digits, '_', '-', '.'; not starting with '.')")
    return name


def versions(model_dir: str | pathlib.Path) -> list[int]:
    model_dir = pathlib.Path(model_dir)
    if not model_dir.is_dir():
        return []
    return sorted(int(p.name) for p in model_dir.iterdir() if p.is_dir() and p.name.isdigit())


def next_version(model_dir: str | pathlib.Path) -> int:
    found = versions(model_dir)
    return (found[-1] + 1) if found else 1


def version_target(model_base_path: str | pathlib.Path, name: str, version: int | None, *, force: bool) -> tuple[pathlib.Path, int, pathlib.Path]:
    """Check an export's ``--name``/``--version`` before any work: ``(model_dir, version, final_dir)``.

    ``version=None`` takes the next free number; an existing version is refused
    unless ``force`` (then :func:`publish` swaps it).
    """
    check_model_name(name)
    if version is not None and version < 1:
        raise RunError(f"--version: expected a positive integer, got {version}")
    model_dir = pathlib.Path(model_base_path) / name
    version = version if version is not None else next_version(model_dir)
    final_dir = model_dir / str(version)
    if final_dir.exists() and not force:
        raise RunError(f"{final_dir}: version exists; pass --force to overwrite it or omit --version for the next free one")
    return model_dir, version, final_dir


def temporary_version_dir(model_dir: pathlib.Path) -> pathlib.Path:
    model_dir.mkdir(parents=True, exist_ok=True)
    return pathlib.Path(tempfile.mkdtemp(prefix=".tmp-export-", dir=model_dir))


@contextlib.contextmanager
def staged_version(model_dir: pathlib.Path, final_dir: pathlib.Path, *, force: bool) -> Iterator[pathlib.Path]:
    """A hidden folder next to the versions to write an export into: published as ``final_dir`` when
    the block ends, deleted if it raises, so a server polling ``model_dir`` never sees half a version."""
    tmp = temporary_version_dir(model_dir)
    try:
        yield tmp
        publish(tmp, final_dir, force=force)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def publish(tmp_dir: pathlib.Path, final_dir: pathlib.Path, *, force: bool) -> None:
    """Move a finished export into place; with ``force`` replace an existing version."""
    if final_dir.exists():
        if not force:
            raise RunError(f"{final_dir}: version exists; pass --force to overwrite it or omit --version for the next free one")
        trash = final_dir.parent / f".trash-{final_dir.name}-{os.getpid()}"
        os.rename(final_dir, trash)
        os.rename(tmp_dir, final_dir)
        shutil.rmtree(trash, ignore_errors=True)
        return
    os.rename(tmp_dir, final_dir)
