"""kill -9 in the middle of training, run the same command again: it resumes."""
import json
import os
import signal
import subprocess
import sys
import time

from tests.conftest import make_sentiment_rows, tiny_config_text, write_csv


def test_resume_after_kill_9(tmp_path):
    train = write_csv(tmp_path / "train.csv", make_sentiment_rows(1200, seed=4))
    config = tmp_path / "c.yaml"
    # many small steps so the kill lands mid-run; backups every 5 steps
    config.write_text(tiny_config_text(train, tmp_path / "runs", name="resume", epochs=3).replace("batch_size: 16", "batch_size: 4"))
    cmd = [sys.executable, "-m", "llmos_tf.cli", "train", str(config)]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    run_dir = tmp_path / "runs" / "resume"
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env, start_new_session=True)
    try:
        deadline = time.time() + 240
        backup = run_dir / "backup"
        while time.time() < deadline:
            if backup.is_dir() and any(p.name.startswith("chief") or p.suffix == ".index" or p.name == "checkpoint" for p in backup.rglob("*")):
                break
            assert proc.poll() is None, "training ended before a backup was written"
            time.sleep(0.2)
        else:
            raise AssertionError("no backup written within 240 s")
        time.sleep(1.0)
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert not (run_dir / "run.json").exists()
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=400)
    assert done.returncode == 0, done.stderr[-2000:]
    info = json.loads((run_dir / "run.json").read_text())
    assert info["resumed"] is True
    # the second process started from the backup's step, not from zero, and ended at the same step count
    assert info["resumed_from_step"] > 0
    assert info["optimizer_steps"] == info["steps_per_epoch"] * 3
