"""Two MultiWorkerMirroredStrategy workers on loopback: only the chief writes, and kill -9 resumes from the backup.

Each worker is a real ``llmos train ... --strategy multi_worker`` process with
its own ``TF_CONFIG`` (two free 127.0.0.1 ports), exactly what a user runs on
two machines. Every wait is bounded; on a timeout all processes are killed and
their logs are shown.
"""
from __future__ import annotations

import json
import os
import pathlib
import signal
import socket
import subprocess
import sys
import time

import pytest

from tests.conftest import make_sentiment_rows, tiny_config_text, write_csv

REPO = pathlib.Path(__file__).resolve().parents[2]
EPOCHS = 3
# TPU-mode batches (fixed [global_batch, max_length] shapes): one trace of the train step instead of one per bucket
OVERRIDES = ["--set", "data.tpu_mode=true", "--set", "data.bucketing=false"]
WAIT = 480  # seconds for one cluster run; a few times what it needs on an idle 2-core machine
pytestmark = pytest.mark.timeout(600)


def _free_ports(n: int) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


class Cluster:
    """The same ``llmos train`` command on worker 0 (chief) and worker 1."""

    def __init__(self, config: pathlib.Path, logs: pathlib.Path):
        self.config = config
        self.logs = logs
        self.ports = _free_ports(2)
        self.procs: list[subprocess.Popen] = []
        self.starts = 0

    def start(self) -> None:
        self.starts += 1
        cluster = {"worker": [f"127.0.0.1:{p}" for p in self.ports]}
        self.procs = []
        for index in range(2):
            env = dict(os.environ, TF_CONFIG=json.dumps({"cluster": cluster, "task": {"type": "worker", "index": index}}),
                       TF_NUM_INTEROP_THREADS="1", TF_NUM_INTRAOP_THREADS="1", PYTHONPATH=str(REPO))
            with open(self.logs / f"worker{index}.start{self.starts}.log", "w") as log:  # the child keeps its own handle
                self.procs.append(subprocess.Popen(
                    [sys.executable, "-m", "llmos_tf.cli", "train", str(self.config), "--strategy", "multi_worker", *OVERRIDES],
                    cwd=str(REPO), env=env, stdout=log, stderr=subprocess.STDOUT,
                ))

    def log_tail(self) -> str:
        parts = []
        for path in sorted(self.logs.glob("worker*.log")):
            parts.append(f"--- {path.name}\n" + path.read_text(errors="replace")[-2500:])
        return "\n".join(parts)

    def kill(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                p.kill()
        for p in self.procs:
            p.wait(timeout=30)

    def wait(self, timeout: float) -> list[int]:
        deadline = time.monotonic() + timeout
        try:
            return [p.wait(timeout=max(1.0, deadline - time.monotonic())) for p in self.procs]
        except subprocess.TimeoutExpired:
            self.kill()
            pytest.fail(f"workers did not finish within {timeout:.0f} s\n{self.log_tail()}")


def _write_config(root: pathlib.Path, name: str) -> pathlib.Path:
    data = root / "train.csv"
    if not data.exists():
        write_csv(data, make_sentiment_rows(240, seed=1))
    config = root / f"{name}.yaml"
    config.write_text(tiny_config_text(data, root / "runs", name=name, epochs=EPOCHS))
    return config


def _backup_epoch(backup: pathlib.Path) -> int:
    """Epoch index BackupAndRestore stored in the chief's latest backup (-1: none yet)."""
    from llmos_tf._tf import tf

    try:
        latest = tf.train.latest_checkpoint(str(backup / "chief"))
        if latest is None:
            return -1
        return int(tf.train.load_checkpoint(latest).get_tensor("ckpt_saved_epoch/.ATTRIBUTES/VARIABLE_VALUE"))
    except (tf.errors.OpError, ValueError):  # being rotated while we read: ask again
        return -1


@pytest.fixture(scope="module")
def uninterrupted_cluster(tmp_path_factory):
    root = tmp_path_factory.mktemp("multi_worker")
    cluster = Cluster(_write_config(root, "mw"), root)
    try:
        cluster.start()
        codes = cluster.wait(timeout=WAIT)
        assert codes == [0, 0], cluster.log_tail()
        yield cluster
    finally:
        cluster.kill()  # no stray workers, whatever failed (pytest-timeout included)


@pytest.fixture(scope="module")
def uninterrupted(uninterrupted_cluster) -> pathlib.Path:
    return uninterrupted_cluster.config.parent / "runs" / "mw"


def test_two_workers_train_and_only_the_chief_writes(uninterrupted_cluster, uninterrupted):
    from llmos_tf.training.distribute import scratch_dir
    from llmos_tf.tasks.classification import TrainedRun

    run = TrainedRun.load(uninterrupted)
    assert run.info["replicas"] == 2
    assert run.info["optimizer_steps"] == run.info["steps_per_epoch"] * EPOCHS
    out = run.predict(["the film was wonderful and lovely", "the plot was awful and boring"])
    assert out["label"].tolist() == ["positive", "negative"]
    assert (out["probability"] > 0.5).all()
    # worker 1 wrote into its own scratch folder (removed), never into the run folder
    names = {p.name for p in uninterrupted.rglob("*")}
    assert not any(n.startswith("workertemp_") for n in names), sorted(names)
    assert "backup" not in names
    # TensorBoard event files are named events.out.tfevents.<time>.<host>.<pid>...: all from the chief
    events = list(uninterrupted.rglob("events.out.tfevents.*"))
    chief_pid = str(uninterrupted_cluster.procs[0].pid)
    assert events and all(p.name.split(".")[-3] == chief_pid for p in events), (chief_pid, sorted(p.name for p in events))
    assert not scratch_dir(uninterrupted, "worker:1").exists()


@pytest.fixture
def cluster(tmp_path):
    cluster = Cluster(_write_config(tmp_path, "mw"), tmp_path)
    yield cluster
    cluster.kill()


def test_kill_a_worker_and_restart_resumes_from_the_backup(uninterrupted, cluster, tmp_path):
    run_dir = tmp_path / "runs" / "mw"
    cluster.start()
    deadline = time.monotonic() + WAIT
    # wait for a backup taken in the second epoch or later, then kill -9 worker 1
    while _backup_epoch(run_dir / "backup") < 1:
        if time.monotonic() > deadline or any(p.poll() is not None for p in cluster.procs):
            cluster.kill()
            pytest.fail(f"no backup from epoch 2 while both workers ran\n{cluster.log_tail()}")
        time.sleep(0.1)
    os.kill(cluster.procs[1].pid, signal.SIGKILL)
    cluster.kill()  # the chief cannot go on without its peer: it is restarted as well
    assert not (run_dir / "run.json").exists(), "training finished before the kill; make the run longer"

    cluster.start()  # same command, same TF_CONFIG
    codes = cluster.wait(timeout=WAIT)
    assert codes == [0, 0], cluster.log_tail()
    info = json.loads((run_dir / "run.json").read_text())
    expected = json.loads((uninterrupted / "run.json").read_text())
    assert info["resumed"] is True
    assert info["initial_epoch"] >= 1 and info["resumed_from_step"] > info["steps_per_epoch"]
    assert info["optimizer_steps"] == expected["optimizer_steps"] == info["steps_per_epoch"] * EPOCHS
    assert info["epochs_run"] < EPOCHS
