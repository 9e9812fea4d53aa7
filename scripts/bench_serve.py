"""Load on `mt serve`: throughput and p50/p95 latency with 1, 4 and 16 concurrent clients on
127.0.0.1, each client sending one test sentence per request, a fixed number of requests (the
script stops by itself). Starts the server itself; appends the table to docs/BENCHMARKS.md.

    python scripts/bench_serve.py --run runs/multi30k_en_de-transformer_tiny
    python scripts/bench_serve.py --run R --engine ctranslate2 --requests 400 --beam 5
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import re
import shlex
import statistics
import subprocess
import sys
import threading
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))

from bench_inference import test_split  # noqa: E402


def start_server(args: argparse.Namespace) -> tuple[subprocess.Popen, str]:
    command = [
        sys.executable, "-m", "mt", "serve", "--run", args.run, "--port", "0",
        "--engine", args.engine, "--max-wait-ms", str(args.max_wait_ms),
    ]  # fmt: skip
    if args.threads:
        command += ["--threads", str(args.threads)]
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines: list[str] = []
    threading.Thread(target=lambda: lines.extend(proc.stdout), daemon=True).start()
    deadline = time.monotonic() + 300
    while not (m := re.search(r"Uvicorn running on (http://[\d.]+:\d+)", "".join(lines))):
        if proc.poll() is not None or time.monotonic() > deadline:
            sys.exit("the server did not start:\n" + "".join(lines))
        time.sleep(0.1)
    return proc, m.group(1)


def post(url: str, sentence: str, beam: int) -> float:
    body = json.dumps({"sentences": [sentence], "beam": beam}).encode()
    request = urllib.request.Request(url, body, {"Content-Type": "application/json"})
    start = time.perf_counter()
    with urllib.request.urlopen(request, timeout=300) as response:
        json.loads(response.read())
    return time.perf_counter() - start


def load(url: str, sentences: list[str], clients: int, requests: int, beam: int) -> dict:
    """`requests` requests spread over `clients` concurrent clients; latencies and throughput."""
    work = [sentences[i % len(sentences)] for i in range(requests)]
    start = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        latencies = list(pool.map(lambda s: post(f"{url}/translate", s, beam), work))
    seconds = time.perf_counter() - start
    latencies.sort()
    return {
        "sentences_per_s": requests / seconds,
        "p50_ms": 1000 * statistics.median(latencies),
        "p95_ms": 1000 * latencies[int(0.95 * (len(latencies) - 1))],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", required=True)
    parser.add_argument("--engine", default="torch", choices=["torch", "ctranslate2"])
    parser.add_argument("--beam", type=int, default=5)
    parser.add_argument("--requests", type=int, default=320, help="requests per concurrency level")
    parser.add_argument("--max-wait-ms", type=float, default=10.0)
    parser.add_argument("--threads", type=int, help="server decoding threads (default: all)")
    parser.add_argument("--no-append", action="store_true")
    args = parser.parse_args()

    sentences, _, corpus, _ = test_split(Path(args.run), args.requests)
    proc, url = start_server(args)
    try:
        post(f"{url}/translate", sentences[0], args.beam)  # warm-up
        rows = {c: load(url, sentences, c, args.requests, args.beam) for c in (1, 4, 16)}
    finally:
        proc.terminate()
        proc.wait(timeout=60)
    single = rows[1]["p50_ms"]
    lines = [
        f"\n## `mt serve` under load ({datetime.date.today().isoformat()})\n",
        f"`python scripts/bench_serve.py {shlex.join(sys.argv[1:])}` on {platform.node()} "
        f"({os.cpu_count()} CPUs); {args.requests} requests of one {corpus} sentence each per row, "
        f"beam {args.beam}, engine {args.engine}, clients and server on the same machine.\n",
        "| concurrent clients | sentences/s | p50 latency (ms) | p95 latency (ms) "
        "| p50 / (clients × one client's p50) |",
        "|---:|---:|---:|---:|---:|",
    ]
    for clients, r in rows.items():
        lines.append(
            f"| {clients} | {r['sentences_per_s']:.1f} | {r['p50_ms']:.0f} | {r['p95_ms']:.0f} "
            f"| {r['p50_ms'] / (clients * single):.2f} |"
        )
    text = "\n".join(lines) + "\n"
    print(text)
    if not args.no_append:
        with open(ROOT / "docs" / "BENCHMARKS.md", "a", encoding="utf-8") as f:
            f.write(text)


if __name__ == "__main__":
    main()
