"""A content fingerprint of the data a run was trained on.

The fingerprint goes into ``run.json`` and the exported model card, so a
model can always be traced back to its exact data. It hashes file *contents*
(a copied or moved file gives the same fingerprint, an edited one a new
fingerprint), the role each file played, and the parameters that shape the
examples (columns, split fraction, seed).

Example::

    >>> data_fingerprint({"train": "train.csv", "validation": None}, {"seed": 0})  # doctest: +SKIP
    'sha256:3f1c...'
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Mapping

from llmos_tf.errors import DataError

_CHUNK = 1 << 20


def file_sha256(path: str | os.PathLike) -> str:
    """Hex SHA-256 of a file's bytes, read in 1 MiB chunks."""
    p = Path(path)
    if not p.is_file():
        raise DataError(f"{path}: file not found" if not p.exists() else f"{path}: not a regular file")
    digest = hashlib.sha256()
    try:
        with p.open("rb") as handle:
            for chunk in iter(lambda: handle.read(_CHUNK), b""):
                digest.update(chunk)
    except OSError as exc:
        raise DataError(f"{path}: cannot read the file ({exc.strerror or exc})") from None
    return digest.hexdigest()


def data_fingerprint(
    files: Mapping[str, str | os.PathLike | None],
    params: Mapping[str, object] | None = None,
) -> str:
    """``"sha256:<hex>"`` over each role's file content hash (``None`` files recorded as absent) and the params."""
    payload = {
        "files": {role: (None if path is None else file_sha256(path)) for role, path in files.items()},
        "params": dict(params or {}),
    }
    text = json.dumps(payload, sort_keys=True, separators=(",", ":"), default=str, ensure_ascii=True)
    return "sha256:" + hashlib.sha256(text.encode("utf-8")).hexdigest()
