"""Embeddings through ``llara-rag serve`` on loopback against the encoder in-process, and the page's screenshot.

The same texts (sentences of ``examples/sample_docs``, a few per request, as an application embedding
user questions or new chunks would send) are embedded three ways in one run: by the encoder in this
process (one call, its own batching: the ceiling), and through the HTTP service in a subprocess by one
client sending requests one after another, then by 16 concurrent clients, whose requests the service's
batcher groups into shared encoder calls.

    python benchmarks/serve.py [--requests 64] [--texts-per-request 4]
    python benchmarks/serve.py --screenshot benchmarks/results/serve_page.png   # the chat page, answering
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import re
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
SAMPLE_DOCS = ROOT / "examples" / "sample_docs"
QUESTION = "Who approves an expense claim above 500 euros?"


def sentences(count: int) -> list[str]:
    """``count`` sentences of the sample handbook, cycled when it has fewer."""
    found = []
    for path in sorted(SAMPLE_DOCS.glob("*.md")):
        text = re.sub(r"^#+ .*$", "", path.read_text(encoding="utf-8"), flags=re.MULTILINE)
        found += [s.strip() for s in re.split(r"(?<=[.!?])\s+", " ".join(text.split())) if len(s.split()) > 3]
    return [found[i % len(found)] for i in range(count)]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def start_server(*args: str) -> tuple[subprocess.Popen, str]:
    port = free_port()
    command = [sys.executable, "-m", "llara_rag.cli", "serve", "--port", str(port), *args]
    server = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    for _ in range(600):
        if server.poll() is not None:
            raise SystemExit(f"`{' '.join(command)}` stopped with status {server.returncode}")
        try:
            httpx.get(f"{url}/health", timeout=1).raise_for_status()
            return server, url
        except httpx.HTTPError:
            time.sleep(0.5)
    raise SystemExit(f"`{' '.join(command)}` did not answer in 300 s")


def in_process(texts: list[str]) -> dict:
    from llara_rag.encoding.encoder import get_encoder

    encoder = get_encoder()
    encoder.encode_passages(texts[:8])  # warm-up
    start = time.perf_counter()
    vectors = encoder.encode_passages(texts)
    seconds = time.perf_counter() - start
    return {"texts_per_s": round(len(texts) / seconds, 2), "seconds": round(seconds, 2), "vectors": vectors}


async def through_service(url: str, requests: list[list[str]], clients: int) -> dict:
    """``clients`` concurrent clients sharing ``requests``; each request's latency, and the throughput."""
    queue: asyncio.Queue[int] = asyncio.Queue()
    for number in range(len(requests)):
        queue.put_nowait(number)
    latencies: list[float] = []
    vectors: dict[int, list[list[float]]] = {}

    async def client(http: httpx.AsyncClient) -> None:
        while not queue.empty():
            number = queue.get_nowait()
            sent = time.perf_counter()
            body = {"input": requests[number], "encoding_format": "base64"}  # as OpenAI's clients ask
            response = await http.post("/v1/embeddings", json=body)
            response.raise_for_status()
            latencies.append(time.perf_counter() - sent)
            vectors[number] = [
                np.frombuffer(base64.b64decode(item["embedding"]), dtype="<f4")
                for item in response.json()["data"]
            ]

    async with httpx.AsyncClient(base_url=url, timeout=600) as http:
        await http.post("/v1/embeddings", json={"input": requests[0]})  # warm-up
        start = time.perf_counter()
        await asyncio.gather(*(client(http) for _ in range(clients)))
        seconds = time.perf_counter() - start
    texts = sum(map(len, requests))
    return {
        "clients": clients,
        "requests_per_s": round(len(requests) / seconds, 2),
        "texts_per_s": round(texts / seconds, 2),
        "p50_ms": round(float(np.percentile(latencies, 50)) * 1000),
        "p95_ms": round(float(np.percentile(latencies, 95)) * 1000),
        "vectors": np.array([v for number in sorted(vectors) for v in vectors[number]], dtype=np.float32),
    }


def markdown(run: dict) -> str:
    rows = [
        f"| in-process `encode_passages` (one call) | | {run['in_process']['texts_per_s']} | | | 100 % |",
        *(
            f"| service, {r['clients']} client{'s' if r['clients'] > 1 else ''} | {r['requests_per_s']} | "
            f"{r['texts_per_s']} | {r['p50_ms']} | {r['p95_ms']} | {r['share_of_in_process']:.0%} |"
            for r in run["service"]
        ),
    ]
    return "\n".join(
        [
            f"# Serving: embeddings over HTTP on loopback, {run['model']}, {run['threads']}",
            "",
            (
                f"{run['requests']} requests of {run['texts_per_request']} sample-handbook sentences each "
                f"({run['texts']} texts), vectors requested as base64 as OpenAI's clients do; "
                "`python benchmarks/serve.py`."
            ),
            "",
            "| path | requests/s | texts/s | p50 ms | p95 ms | of in-process |",
            "|---|---:|---:|---:|---:|---:|",
            *rows,
            "",
            (
                "Goal (issue #23): 16 clients at >= 80 % of in-process throughput: "
                f"**{'met' if run['goal_met'] else 'not met'}**. Max |difference| between served and "
                f"in-process vectors: {run['max_difference']:.1e}."
            ),
            "",
        ]
    )


def benchmark(args: argparse.Namespace) -> None:
    texts = sentences(args.requests * args.texts_per_request)
    requests = [texts[i : i + args.texts_per_request] for i in range(0, len(texts), args.texts_per_request)]
    local = in_process(texts)
    server, url = start_server(
        "--embeddings-only",
        *(["--batch-wait-ms", str(args.batch_wait_ms)] if args.batch_wait_ms is not None else []),
    )
    try:
        service = [asyncio.run(through_service(url, requests, clients)) for clients in (1, 16)]
    finally:
        server.terminate()
        server.wait()
    difference = max(float(np.abs(r.pop("vectors") - local["vectors"]).max()) for r in service)
    local.pop("vectors")
    for row in service:
        row["share_of_in_process"] = round(row["texts_per_s"] / local["texts_per_s"], 3)
    run = {
        "model": "smollm2 + default adapter",
        "threads": f"{os.cpu_count()} CPU cores",
        "requests": len(requests),
        "texts_per_request": args.texts_per_request,
        "texts": len(texts),
        "in_process": local,
        "service": service,
        "max_difference": difference,
        "goal_met": service[-1]["share_of_in_process"] >= 0.8,
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "serve.json").write_text(json.dumps(run, indent=2), encoding="utf-8")
    (RESULTS / "serve.md").write_text(markdown(run), encoding="utf-8")
    print(markdown(run))


def screenshot(path: Path) -> None:
    """Indexes the sample handbook, serves it with chat, asks :data:`QUESTION` in Chromium, opens source 1."""
    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory() as db:
        subprocess.run(
            [sys.executable, "-m", "llara_rag.cli", "index", str(SAMPLE_DOCS), "--db", db], check=True
        )
        server, url = start_server("--db", db)
        try:
            with sync_playwright() as playwright:
                browser = playwright.chromium.launch(
                    executable_path="/usr/bin/chromium",
                    args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"],
                )
                page = browser.new_page(viewport={"width": 1200, "height": 640})
                page.goto(url)
                page.fill("#question", QUESTION)
                page.click("#send")
                page.wait_for_function("!document.getElementById('send').disabled", timeout=300_000)
                page.locator(".sources button").first.click()
                page.screenshot(path=str(path))
                browser.close()
        finally:
            server.terminate()
            server.wait()
    print(f"wrote {path}")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--requests", type=int, default=64)
    parser.add_argument("--texts-per-request", type=int, default=4)
    parser.add_argument("--batch-wait-ms", type=float, default=None, help="the service's batching window")
    parser.add_argument(
        "--screenshot", type=Path, help="save the chat page answering a question here instead"
    )
    args = parser.parse_args()
    if args.screenshot:
        screenshot(args.screenshot)
    else:
        benchmark(args)


if __name__ == "__main__":
    main()
