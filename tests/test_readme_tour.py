"""The README's tour runs as shipped.

The first ```bash block after the "## Tour" heading of README.md is run command by command in a
temporary folder holding a copy of ``configs/``, with ``llmos`` from this interpreter's environment.
Sizes shrink only through documented flags appended to a command (fewer training epochs, fewer
fine-tuning steps and scored examples for ``compress``); the ports are replaced by free ones.
Commands ending in ``&`` (the server) and ``llmos tensorboard`` run in the background; each is
checked once and stopped within a bounded time.
"""
from __future__ import annotations

import json
import os
import pathlib
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]

# appended to the command whose first words match; every flag is documented in that command's --help
SHRINK = {
    ("llmos", "train"): ["--set", "training.epochs=1"],
    ("llmos", "compress"): ["--steps_per_epoch", "4", "--max_eval_examples", "40"],
}
COMMAND_TIMEOUT = 420  # seconds, per foreground command
START_TIMEOUT = 120  # seconds for a background service to answer


def tour_commands(readme: str) -> list[str]:
    """The tour block's commands, continuation lines joined, blank and comment-only lines dropped."""
    match = re.search(r"^## Tour\n(.*?)^```bash\n(.*?)^```", readme, flags=re.S | re.M)
    assert match, 'README.md has no ```bash block under a "## Tour" heading'
    commands, current = [], ""
    for line in match.group(2).splitlines():
        current += line
        if current.endswith("\\"):
            current = current[:-1]
            continue
        if current.strip() and not current.strip().startswith("#"):
            commands.append(current.strip())
        current = ""
    return commands


def test_tour_block_is_short_and_complete():
    commands = tour_commands((ROOT / "README.md").read_text(encoding="utf-8"))
    assert len(commands) <= 10
    for step in ("sample-data", "train", "evaluate", "compress", "serve", "tensorboard"):
        assert any(shlex.split(c, comments=True)[:2] == ["llmos", step] for c in commands), step


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _with_free_ports(command: str, ports: dict[str, int]) -> str:
    for old, new in ports.items():
        command = re.sub(rf"\b{old}\b", str(new), command)
    return command


def _shrunk(words: list[str]) -> list[str]:
    return words + SHRINK.get(tuple(words[:2]), [])


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PATH"] = os.pathsep.join([str(pathlib.Path(sys.executable).parent), env.get("PATH", "")])
    env.pop("TF_CONFIG", None)
    return env


def _run(words: list[str], cwd: pathlib.Path) -> str:
    if words[0] == "curl" and shutil.which("curl") is None:
        return _curl_in_python(words)
    done = subprocess.run(words, cwd=cwd, env=_env(), capture_output=True, text=True, timeout=COMMAND_TIMEOUT)
    assert done.returncode == 0, f"{shlex.join(words)} exited {done.returncode}\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done.stdout


def _curl_in_python(words: list[str]) -> str:
    """`curl ... -d DATA URL` for machines without curl: POST DATA to URL, retrying until it answers."""
    data = words[words.index("-d") + 1].encode()
    url = next(w for w in words[1:] if re.match(r"(https?://)?[\w.-]+:\d+/", w))
    url = url if url.startswith("http") else "http://" + url
    deadline = time.monotonic() + START_TIMEOUT
    while True:
        try:
            with urllib.request.urlopen(urllib.request.Request(url, data=data), timeout=30) as response:
                return response.read().decode()
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(1)


def _start(words: list[str], cwd: pathlib.Path, log: pathlib.Path) -> subprocess.Popen:
    handle = open(log, "w")
    return subprocess.Popen(words, cwd=cwd, env=_env(), stdout=handle, stderr=subprocess.STDOUT, start_new_session=True)


def _stop(process: subprocess.Popen, grace: float = 30) -> None:
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(grace)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(10)


def _wait_http(url: str, process: subprocess.Popen, log: pathlib.Path) -> bytes:
    deadline = time.monotonic() + START_TIMEOUT
    while True:
        assert process.poll() is None, f"exited {process.returncode}:\n{log.read_text()[-3000:]}"
        try:
            with urllib.request.urlopen(url, timeout=10) as response:
                return response.read()
        except OSError:
            assert time.monotonic() < deadline, f"{url} did not answer in {START_TIMEOUT} s:\n{log.read_text()[-3000:]}"
            time.sleep(1)


@pytest.mark.timeout(1200)  # ~3 min on two idle cores; allow for the rest of the suite on the same cores
def test_readme_tour_runs(tmp_path):
    commands = tour_commands((ROOT / "README.md").read_text(encoding="utf-8"))
    shutil.copytree(ROOT / "configs", tmp_path / "configs")
    ports = {"8500": _free_port(), "8501": _free_port(), "6006": _free_port()}
    background: list[subprocess.Popen] = []
    outputs: dict[str, str] = {}
    try:
        for number, command in enumerate(commands):
            started = time.monotonic()
            words = _shrunk(shlex.split(_with_free_ports(command, ports), comments=True))
            if words[-1] == "&" or words[:2] == ["llmos", "tensorboard"]:
                words = [w for w in words if w != "&"]
                log = tmp_path / f"background_{number}.log"
                process = _start(words, tmp_path, log)
                background.append(process)
                if words[:2] == ["llmos", "tensorboard"]:
                    page = _wait_http(f"http://127.0.0.1:{ports['6006']}/", process, log)
                    assert b"TensorBoard" in page or b"tensorboard" in page
            else:
                outputs[" ".join(words[:2])] = _run(words, tmp_path)
            print(f"{time.monotonic() - started:6.1f} s  {shlex.join(words)}")
    finally:
        for process in background:
            _stop(process)

    run = tmp_path / "runs" / "reviews"
    assert json.loads((run / "run.json").read_text())["metrics"]
    assert "accuracy" in outputs["llmos evaluate"]
    assert re.search(r"positive|negative", outputs["llmos predict"])
    assert (tmp_path / "models" / "reviews" / "1" / "saved_model.pb").is_file()
    assert (run / "compression" / "report.json").is_file()
    answer = json.loads(outputs[next(k for k in outputs if k.startswith("curl"))])
    assert answer["predictions"][0]["label"] in {"negative", "positive"}
