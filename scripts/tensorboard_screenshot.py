"""Screenshot a TensorBoard dashboard with headless Chromium (the README's docs/tensorboard.png).

Starts TensorBoard on a runs folder (on a free 127.0.0.1 port), waits until it answers, lets
headless Chromium render one dashboard and write a PNG, then stops TensorBoard.

    python scripts/tensorboard_screenshot.py --logdir runs --out docs/tensorboard.png
    python scripts/tensorboard_screenshot.py --sample --out docs/tensorboard.png   # trains two small runs first
    python scripts/tensorboard_screenshot.py --logdir runs --dashboard hparams --out /tmp/hparams.png

Needs Chromium (Debian: ``apt-get install chromium``); ``--chromium PATH`` picks another binary.
"""
from __future__ import annotations

import argparse
import pathlib
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from urllib.parse import quote

ROOT = pathlib.Path(__file__).resolve().parents[1]
DASHBOARDS = ("scalars", "timeseries", "hparams", "images", "pr_curves", "projector", "text", "graphs")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def train_sample_runs(logdir: pathlib.Path, epochs: int = 4) -> None:
    """A BiLSTM and a tiny BERT on the sample data, as notebooks/01_quickstart trains them."""
    sys.path.insert(0, str(ROOT))
    import llmos_tf
    from llmos_tf.data.sample import write_sample_data

    data = logdir.parent / "data"
    write_sample_data(data)
    common = {"data.train": str(data / "sentiment_train.csv"), "data.test": str(data / "sentiment_test.csv"),
              "output_dir": str(logdir), "training.epochs": epochs}
    llmos_tf.train(ROOT / "configs" / "sample_bilstm.yaml", common, overwrite=True)
    llmos_tf.train(ROOT / "configs" / "sample_bilstm.yaml", {**common, "name": "sample_bert", "training.learning_rate": 0.003, "model": {
        "architecture": "bert", "encoder": None, "num_layers": 1, "hidden_dim": 64, "num_heads": 2, "intermediate_dim": 128,
        "dropout": 0.1, "pooling": "mean"}}, overwrite=True)


def wait_http(url: str, timeout: float) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=5) as reply:
                if reply.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    raise RuntimeError(f"TensorBoard did not answer at {url} within {timeout:.0f} s")


def screenshot(logdir: pathlib.Path, out: pathlib.Path, dashboard: str, width: int, height: int, chromium: str, wait_ms: int,
               tag_filter: str | None = None) -> pathlib.Path:
    port = free_port()
    board = subprocess.Popen([sys.executable, "-m", "tensorboard.main", "--logdir", str(logdir), "--host", "127.0.0.1", "--port", str(port)],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_http(f"http://127.0.0.1:{port}/data/runs", 120)
        out.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory() as profile:
            subprocess.run([chromium, "--headless=new", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--no-first-run",
                            f"--user-data-dir={profile}", f"--window-size={width},{height}", f"--virtual-time-budget={wait_ms}",
                            f"--screenshot={out}", f"http://127.0.0.1:{port}/#{dashboard}" + (f"&tagFilter={quote(tag_filter)}" if tag_filter else "")],
                           check=True, timeout=180, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    finally:
        board.terminate()
        board.wait(timeout=30)
    if not out.is_file() or out.stat().st_size < 1000:
        raise RuntimeError(f"Chromium wrote no screenshot to {out}")
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--logdir", type=pathlib.Path, help="runs folder (default: runs, or a temporary one with --sample)")
    parser.add_argument("--sample", action="store_true", help="first train two small runs on the sample data (about a minute)")
    parser.add_argument("--out", type=pathlib.Path, default=ROOT / "docs" / "tensorboard.png")
    parser.add_argument("--dashboard", choices=DASHBOARDS, default="scalars")
    parser.add_argument("--tag_filter", default="epoch_", help="tag regex for the scalars dashboard (default: epoch_, the per-epoch curves)")
    parser.add_argument("--width", type=int, default=1400)
    parser.add_argument("--height", type=int, default=900)
    parser.add_argument("--wait_ms", type=int, default=20000, help="virtual time Chromium gives the page to load its data")
    parser.add_argument("--chromium", default=shutil.which("chromium") or shutil.which("chromium-browser") or "chromium")
    args = parser.parse_args(argv)
    if not shutil.which(args.chromium) and not pathlib.Path(args.chromium).is_file():
        print(f"error: no Chromium at {args.chromium!r}; install it (Debian: apt-get install chromium) or pass --chromium PATH", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory() as scratch:
        logdir = args.logdir or (pathlib.Path(scratch) / "runs" if args.sample else pathlib.Path("runs"))
        if args.sample:
            train_sample_runs(logdir)
        if not logdir.is_dir():
            print(f"error: {logdir}: no such runs folder (train one, or pass --sample)", file=sys.stderr)
            return 2
        path = screenshot(logdir, args.out, args.dashboard, args.width, args.height, args.chromium, args.wait_ms,
                          args.tag_filter if args.dashboard == "scalars" else None)
    print(f"wrote {path} ({path.stat().st_size // 1024} KiB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
