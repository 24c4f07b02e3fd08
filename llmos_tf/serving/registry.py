"""The model registry: which versions are loaded, and their lifecycle.

It follows TF Serving's manager so that users see the same behaviour:

* version states START -> LOADING -> AVAILABLE -> UNLOADING -> END, each with an
  error code and message (``GetModelStatus`` reports them);
* version policies ``latest`` N / ``all`` / ``specific`` pick the *aspired*
  versions among the all-digit folders on disk;
* the availability-preserving policy: a new version is fully loaded (and warmed
  up) before an old one is unloaded, and the last available version of a model
  is never unloaded because its folder vanished;
* unloading waits until requests holding a :class:`Lease` on the version end;
* a version that fails to load (missing variables, garbage ``saved_model.pb``)
  stays in the status list as END with the error, is not retried until its files
  change, and never takes the healthy version down;
* a request that finds no available version is told why: the NOT_FOUND message
  carries the load errors of the versions that failed (gRPC details, REST
  ``{"error": ...}``), not only the server log.

A background thread re-reads the base paths every ``poll_seconds``.

Example::

    registry = ModelRegistry([ModelConfig("sst2", Path("saved_models/sst2"))])
    registry.sync()
    with registry.acquire("sst2") as servable:
        servable.run("serving_default", {"text": np.array([b"great film"], dtype=object)})
"""
from __future__ import annotations

import logging
import pathlib
import threading
import time
from dataclasses import dataclass, field, replace
from typing import Callable, Iterator

from tensorflow_serving.apis.get_model_status_pb2 import ModelVersionStatus

from llmos_tf.serving.errors import ServingError, failed_precondition, invalid_argument, not_found
from llmos_tf.serving.model_config import LABEL_RE, ModelConfig, discover_models, is_version_dir
from llmos_tf.serving.servable import Servable

log = logging.getLogger("llmos_tf.serving")
State = ModelVersionStatus.State
UNKNOWN_CODE = 2  # tensorflow.error.Code.UNKNOWN


@dataclass
class VersionRecord:
    """What the registry knows about one version folder."""

    version: int
    path: pathlib.Path
    state: int = State.START
    error_code: int = 0
    error_message: str = ""
    servable: Servable | None = None
    refcount: int = 0
    failed_fingerprint: tuple | None = None
    load_error: str = ""  # "<ExceptionType>: <message>" of the last failed load, for NOT_FOUND answers


@dataclass
class ModelRecord:
    config: ModelConfig
    versions: dict[int, VersionRecord] = field(default_factory=dict)
    labels: dict[str, int] = field(default_factory=dict)
    removed: bool = False


def _fingerprint(path: pathlib.Path) -> tuple:
    """Changes when a version's files are rewritten, so a failed version is retried only then."""
    parts = []
    for rel in ("saved_model.pb", "variables/variables.index", "variables"):
        try:
            st = (path / rel).stat()
            parts.append((rel, st.st_mtime_ns, st.st_size))
        except OSError:
            parts.append((rel, None, None))
    return tuple(parts)


MAX_REASON_CHARS = 600  # per failed version in a NOT_FOUND message (gRPC details travel in a header)
MAX_REASONS = 3


def _one_line(text: str, limit: int) -> str:
    """Whitespace (TensorFlow's multi-line errors) collapsed to single spaces, cut at ``limit`` characters."""
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 3] + "..."


def _why_unavailable(record: "ModelRecord") -> str:
    """Why a model has no AVAILABLE version, for the NOT_FOUND message a client sees (caller holds the lock)."""
    failed = sorted((r for r in record.versions.values() if r.state == State.END and r.load_error), key=lambda r: -r.version)
    if failed:
        parts = [f"version {r.version} failed to load: {r.load_error}" for r in failed[:MAX_REASONS]]
        if len(failed) > MAX_REASONS:
            parts.append(f"{len(failed) - MAX_REASONS} older version(s) failed too (GetModelStatus lists them)")
        return "; ".join(parts)
    loading = sorted(v for v, r in record.versions.items() if r.state in (State.START, State.LOADING))
    if loading:
        return f"no version is available yet (loading: {', '.join(map(str, loading))})"
    return f"no version is available (no loadable version folder under {record.config.base_path})"


class Lease:
    """Holds a version loaded while a request uses it (context manager)."""

    def __init__(self, registry: "ModelRegistry", record: VersionRecord):
        self._registry, self._record = registry, record
        self.servable: Servable = record.servable  # type: ignore[assignment]

    def __enter__(self) -> Servable:
        return self.servable

    def __exit__(self, *exc) -> None:
        self.release()

    def release(self) -> None:
        if self._record is not None:
            self._registry._release(self._record)
            self._record = None


class ModelRegistry:
    """Loads, serves and unloads model versions under TF Serving's rules."""

    def __init__(
        self,
        models: list[ModelConfig] | None = None,
        *,
        discover_root: pathlib.Path | None = None,
        warmup: Callable[[Servable], None] | None = None,
        on_load: Callable[[str, int, bool], None] | None = None,
        prefer_tflite_model: bool = False,
    ) -> None:
        self._prefer_tflite = prefer_tflite_model
        self._models: dict[str, ModelRecord] = {}
        self._discover_root = discover_root
        self._warmup = warmup
        self._on_load = on_load
        self._cond = threading.Condition()
        self._sync_lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._configured = list(models or [])

    # -- configuration ---------------------------------------------------
    def _wanted_configs(self) -> list[ModelConfig]:
        configs = list(self._configured)
        if self._discover_root is not None:
            names = {c.name for c in configs}
            configs += [c for c in discover_models(self._discover_root) if c.name not in names]
        return configs

    def reload_config(self, models: list[ModelConfig]) -> None:
        """Replace the model list (HandleReloadConfigRequest); loads and unloads before returning."""
        with self._sync_lock:
            self._discover_root = None
            self._configured = list(models)
            self._sync_locked()
            self._check_labels(strict=True)

    # -- polling ---------------------------------------------------------
    def sync(self, strict_labels: bool = False) -> None:
        """One pass: read the base paths, load aspired versions, then unload the others."""
        with self._sync_lock:
            self._sync_locked()
            self._check_labels(strict=strict_labels)

    def start_polling(self, poll_seconds: float) -> None:
        if poll_seconds <= 0 or self._thread is not None:
            return

        def loop() -> None:
            while not self._stop.wait(poll_seconds):
                try:
                    self.sync()
                except Exception:  # never let the poller die: the server keeps serving what it has
                    log.exception("model base path poll failed")

        self._thread = threading.Thread(target=loop, name="llmos-serving-poll", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
            self._thread = None

    def _sync_locked(self) -> None:
        wanted = {c.name: c for c in self._wanted_configs()}
        with self._cond:
            for name, config in wanted.items():
                record = self._models.get(name)
                if record is None or record.removed:
                    self._models[name] = ModelRecord(config)
                else:
                    record.config = config
            for name, record in self._models.items():
                record.removed = name not in wanted
        for name, record in list(self._models.items()):
            self._sync_model(record)

    def _sync_model(self, record: ModelRecord) -> None:
        config = record.config
        on_disk: dict[int, pathlib.Path] = {}
        if not record.removed and config.base_path.is_dir():
            for child in config.base_path.iterdir():
                if is_version_dir(child):
                    on_disk[int(child.name)] = child
        candidates = []
        for version, path in on_disk.items():
            existing = record.versions.get(version)
            if existing is not None and existing.failed_fingerprint is not None and existing.failed_fingerprint == _fingerprint(path):
                continue  # failed before and unchanged since: ignore it
            candidates.append(version)
        aspired = set() if record.removed else config.policy.select(candidates)
        for version in sorted(aspired, reverse=True):  # newest first: it is the one clients want
            current = record.versions.get(version)
            if current is None or current.state in (State.END, State.START):
                self._load(record, version, on_disk[version])
        for version in sorted(record.versions):
            current = record.versions[version]
            if current.state != State.AVAILABLE or version in aspired:
                continue
            others = [v for v, r in record.versions.items() if v != version and r.state == State.AVAILABLE]
            if others or record.removed:
                self._unload(record, current)
        if record.removed and not any(r.state == State.AVAILABLE for r in record.versions.values()):
            with self._cond:
                if self._models.get(config.name) is record:
                    del self._models[config.name]

    def _load_servable(self, name: str, version: int, path: pathlib.Path) -> Servable:
        """The version's ``model.tflite`` with ``--prefer_tflite_model`` (when it has one), else its SavedModel."""
        from llmos_tf.serving.tflite_servable import TFLITE_FILE, TFLiteServable

        has_tflite = (path / TFLITE_FILE).is_file()
        if self._prefer_tflite and has_tflite:
            return TFLiteServable.load(name, version, path)
        servable = Servable.load(name, version, path)
        if has_tflite and "serving_default" not in servable.inputs:
            raise ValueError(f"{path} holds its model only as {TFLITE_FILE} (a TFLite-only export); serve it with --prefer_tflite_model")
        return servable

    def _load(self, record: ModelRecord, version: int, path: pathlib.Path) -> None:
        name = record.config.name
        entry = VersionRecord(version, path, State.START)
        with self._cond:
            record.versions[version] = entry
            entry.state = State.LOADING
        fingerprint = _fingerprint(path)
        started = time.monotonic()
        try:
            servable = self._load_servable(name, version, path)
            if self._warmup is not None:
                self._warmup(servable)
        except Exception as err:  # a corrupt version is reported, never fatal
            reason = f"{type(err).__name__}: {err}"
            message = f"Failed to load {name} version {version} from {path}: {reason}"
            log.error(message.splitlines()[0][:500])
            with self._cond:
                entry.state = State.END
                entry.error_code = err.code_number if isinstance(err, ServingError) else UNKNOWN_CODE
                entry.error_message = message[:2000]
                entry.load_error = _one_line(reason, MAX_REASON_CHARS)
                entry.failed_fingerprint = fingerprint
            if self._on_load:
                self._on_load(name, version, False)
            return
        with self._cond:
            entry.servable = servable
            entry.state = State.AVAILABLE
            self._cond.notify_all()
        log.info("loaded %s version %d in %.2fs", name, version, time.monotonic() - started)
        if self._on_load:
            self._on_load(name, version, True)

    def _unload(self, record: ModelRecord, entry: VersionRecord) -> None:
        with self._cond:
            entry.state = State.UNLOADING
            # requests that hold a lease finish first; new ones no longer pick this version
            while entry.refcount > 0:
                self._cond.wait(timeout=1.0)
            entry.servable = None
            entry.state = State.END
            for label, v in list(record.labels.items()):
                if v == entry.version:
                    del record.labels[label]
        log.info("unloaded %s version %d", record.config.name, entry.version)

    def _check_labels(self, strict: bool) -> None:
        problems = []
        with self._cond:
            for record in self._models.values():
                labels = {}
                for label, version in record.config.labels.items():
                    if not LABEL_RE.match(label):
                        problems.append(f"model {record.config.name!r}: invalid version label {label!r}")
                        continue
                    entry = record.versions.get(version)
                    if entry is None or entry.state != State.AVAILABLE:
                        problems.append(
                            f"model {record.config.name!r}: version label {label!r} points to version {version}, which is not loaded"
                        )
                        continue
                    labels[label] = version
                record.labels = labels
        if problems:
            if strict:
                raise failed_precondition("; ".join(problems))
            for p in problems:
                log.warning(p)

    # -- requests ----------------------------------------------------------
    def acquire(self, name: str, version: int | None = None, label: str | None = None) -> Lease:
        """A lease on the requested version (latest available by default); NOT_FOUND otherwise."""
        with self._cond:
            record = self._models.get(name)
            if record is None or record.removed:
                raise not_found(f"Servable not found for request: {self._describe(name, version, label)}; models: {', '.join(self.model_names()) or 'none'}")
            if label:
                if not LABEL_RE.match(label):
                    raise invalid_argument(f"version label {label!r} is invalid: use letters, digits and '_' only")
                if label not in record.labels:
                    target = record.versions.get(record.config.labels.get(label, -1))
                    failed = (f"; it points to version {target.version}, which failed to load: {target.load_error}"
                              if target is not None and target.load_error else "")
                    raise not_found(
                        f"Unrecognized servable version label: {label!r} for model {name!r}{failed}; labels: {', '.join(sorted(record.labels)) or 'none'}"
                    )
                version = record.labels[label]
            if version is None:
                available = [v for v, r in record.versions.items() if r.state == State.AVAILABLE]
                if not available:
                    raise not_found(f"Servable not found for request: Latest({name}); {_why_unavailable(record)}")
                version = max(available)
            entry = record.versions.get(int(version))
            if entry is None or entry.state != State.AVAILABLE:
                loaded = sorted(v for v, r in record.versions.items() if r.state == State.AVAILABLE)
                failed = f"; version {entry.version} failed to load: {entry.load_error}" if entry is not None and entry.load_error else ""
                raise not_found(f"Servable not found for request: Specific({name}, {version}){failed}; available versions: {loaded}")
            entry.refcount += 1
            return Lease(self, entry)

    def _release(self, entry: VersionRecord) -> None:
        with self._cond:
            entry.refcount -= 1
            if entry.refcount <= 0:
                self._cond.notify_all()

    @staticmethod
    def _describe(name: str, version: int | None, label: str | None) -> str:
        if label:
            return f"Labeled({name}, {label})"
        return f"Specific({name}, {version})" if version is not None else f"Latest({name})"

    # -- status ------------------------------------------------------------
    def model_names(self) -> list[str]:
        return sorted(n for n, r in self._models.items() if not r.removed)

    def labels(self, name: str) -> dict[str, int]:
        with self._cond:
            record = self._models.get(name)
            return dict(record.labels) if record else {}

    def status(self, name: str, version: int | None = None, label: str | None = None) -> list[VersionRecord]:
        """Snapshots of version records, newest first (GetModelStatus)."""
        with self._cond:
            record = self._models.get(name)
            if record is None or record.removed:
                raise not_found(f"Could not find any versions of model {name}")
            if label:
                if label not in record.labels:
                    raise not_found(f"Unrecognized servable version label: {label!r} for model {name!r}")
                version = record.labels[label]
            entries = [replace(r, servable=None) for r in record.versions.values() if version is None or r.version == int(version)]
        if version is not None and not entries:
            raise not_found(f"Could not find version {version} of model {name}")
        return sorted(entries, key=lambda r: -r.version)

    def wait_until(self, predicate: Callable[[], bool], timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        with self._cond:
            while not predicate():
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._cond.wait(timeout=min(remaining, 0.5))
        return True

    def servables(self) -> Iterator[Servable]:
        with self._cond:
            items = [r.servable for m in self._models.values() for r in m.versions.values() if r.state == State.AVAILABLE]
        return iter([s for s in items if s is not None])
