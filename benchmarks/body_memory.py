"""Peak memory of `llara-rag serve` while a client sends it a 300 MB request, with and without an API key.

A server is started (`serve --embeddings-only` on a tiny random backbone) from the code of each folder
given (``--code NAME=FOLDER``, run with ``PYTHONPATH=FOLDER``: the code before a change, read-only, and
after it), and sent one 300 MB embeddings request over a raw socket: once to a server started with a key,
without the key; once to a server without a key. The server's peak resident memory (``VmHWM`` of
``/proc/PID/status``) is read before the request and once it has answered.

    python benchmarks/body_memory.py --code before=/path/to/old/checkout --code after=.
    # benchmarks/results/body_memory.json; benchmarks/bad_inputs.py puts its table in reliability.md
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
BODY_BYTES = 300_000_000
TEXT_CHARS = 100_000
KEY = "body-memory-key-0123456789"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM in /proc: this benchmark needs Linux")


def send_body(port: int, key: str | None) -> str:
    """Streams a 300 MB JSON body (texts of 100,000 characters); the status line of the answer."""
    text = b'"' + b"a" * TEXT_CHARS + b'"'
    count = (BODY_BYTES - 20) // (len(text) + 1)
    body_length = len(b'{"input": [') + count * (len(text) + 1) - 1 + len(b"]}")
    headers = [
        "POST /v1/embeddings HTTP/1.1",
        f"Host: 127.0.0.1:{port}",
        "Content-Type: application/json",
        f"Content-Length: {body_length}",
        *([f"Authorization: Bearer {key}"] if key else []),
    ]
    with socket.create_connection(("127.0.0.1", port), timeout=600) as connection:
        try:
            connection.sendall(("\r\n".join(headers) + "\r\n\r\n").encode() + b'{"input": [')
            for index in range(count):
                connection.sendall(text + (b"," if index < count - 1 else b"]}"))
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server answered and closed before reading it all: what a limit should do
        try:
            answer = connection.recv(65536).decode("utf-8", "replace")
        except (ConnectionResetError, TimeoutError) as error:
            return f"no answer ({type(error).__name__})"
    head, _, body = answer.partition("\r\n\r\n")
    return f"{head.splitlines()[0].removeprefix('HTTP/1.1 ')}: {body[:300]}"


def measure(code: Path, model: Path, key: str | None) -> dict[str, object]:
    port = free_port()
    command = [sys.executable, "-m", "llara_rag.cli", "serve", "--embeddings-only", "--model", str(model)]
    command += ["--adapter", "none", "--port", str(port), *(["--api-key", key] if key else [])]
    # Run from the model's folder: `python -m` puts the working directory before PYTHONPATH, and the code
    # measured must be the one named (nor may its folder be written to: no bytecode files).
    environment = {**os.environ, "PYTHONPATH": str(code), "HF_HUB_OFFLINE": "1", "PYTHONDONTWRITEBYTECODE": "1"}
    server = subprocess.Popen(
        command, env=environment, cwd=model.parent, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        for _ in range(600):
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1)
                break
            except OSError:
                time.sleep(0.2)
        before = peak_rss_mb(server.pid)
        status = send_body(port, None)
        time.sleep(1)
        after = peak_rss_mb(server.pid)
    finally:
        server.terminate()
        server.wait(timeout=30)
    return {"status": status, "peak_before_mb": before, "peak_after_mb": after}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--code", action="append", required=True, metavar="NAME=FOLDER")
    args = parser.parse_args()
    from llara_rag.testing import build_tiny_backbone

    rows = []
    with tempfile.TemporaryDirectory(prefix="llara-body-memory-") as folder:
        model = build_tiny_backbone(Path(folder) / "tiny")
        for item in args.code:
            name, _, path = item.partition("=")
            for key in (KEY, None):
                row = {"code": name, "key": key is not None, **measure(Path(path).resolve(), model, key)}
                print(row, flush=True)
                rows.append(row)
    intro = (
        f"`benchmarks/body_memory.py`: one request of {BODY_BYTES / 1e6:.0f} MB ({TEXT_CHARS:,}-character "
        "texts) sent without a key to `llara-rag serve --embeddings-only` on a tiny random backbone, "
        "started with a key (the request is refused: 401) or without one (the request is over the limits: "
        "413); the server's peak resident memory (VmHWM) before the request and once it has answered. "
        "before: the code before issue 40; after: with its gate and body limit."
    )
    RESULTS.mkdir(parents=True, exist_ok=True)
    payload = {"intro": intro, "rows": rows}
    (RESULTS / "body_memory.json").write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
