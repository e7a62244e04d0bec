#!/usr/bin/env python3
"""Benchmarks the replica server against `wasmtime serve`, native hyper and FastAPI.

Run by `make bench`, which builds everything in release first. Every server runs
on this machine, on loopback, one after another, under the same `wrk` settings.
For each: requests/s and p50/p99 latency on /home at 1, 32, 256 and 1024
connections and on /heartbeat at 32 (median of several runs), peak RSS, and cold
start (exec to the first 200 on /heartbeat, median of 10). Then how the cost
grows: a pinned single-core row (the server on CPU 0 with one worker, wrk on
CPU 1), the key cell (/home, 32 connections) in several alternating runs for
its median, spread and p99, and throughput and memory with 10,000 idle
keep-alive connections held open. Last, HTTP/2: this host and native hyper over
cleartext HTTP/2 (prior knowledge) under `h2load`, one stream per connection
and many streams on few connections. Prints the tables, writes them to
bench/results.md, and draws bench/results.png.

Last, instructions per request under callgrind for every server (the
figure that does not move with the machine: bench/instructions.py), and what
tracing costs this host (off, every request sampled and exported to a real
collector, 1% sampled).

Settings (environment): BENCH_DURATION seconds per run (3), BENCH_RUNS runs per
cell (3), BENCH_CONNECTIONS (1,32,256,1024), BENCH_COLD_STARTS (10),
BENCH_KEY_RUNS (5), BENCH_IDLE (10000).
"""

from __future__ import annotations

import datetime
import os
import platform
import re
import shutil
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import (  # noqa: E402  (shared with instructions.py and ab.py)
    GUEST, GUEST_P3, HOST, NATIVE, ROOT, VENV, free_port, heartbeat_ok, wasmtime_cli,
)

DURATION = int(os.environ.get("BENCH_DURATION", "3"))
RUNS = int(os.environ.get("BENCH_RUNS", "3"))
CONNECTIONS = [int(c) for c in os.environ.get("BENCH_CONNECTIONS", "1,32,256,1024").split(",")]
COLD_STARTS = int(os.environ.get("BENCH_COLD_STARTS", "10"))
KEY_RUNS = int(os.environ.get("BENCH_KEY_RUNS", "5"))
IDLE = int(os.environ.get("BENCH_IDLE", "10000"))
PATHS = ["/home", "/heartbeat"]
# The comparison the targets are stated in.
KEY_PATH, KEY_CONNECTIONS = "/home", 32
# Every cell measured for every server: /home at each connection count,
# /heartbeat (what load balancers poll) at the key count.
CELLS = [("/home", c) for c in CONNECTIONS] + [("/heartbeat", KEY_CONNECTIONS)]


@dataclass
class Server:
    name: str
    # Builds the command for a port.
    command: object
    cwd: Path = ROOT
    env: dict = field(default_factory=dict)
    # Which `wasmtime serve` mode this one is compared with, if any.
    compare_with: str | None = None


def servers() -> list[Server]:
    wasmtime = str(wasmtime_cli())
    python = str(VENV / "bin/python")
    serve = [wasmtime, "serve", "-Scli", "--env", "SERVER_ID=1"]
    return [
        Server("replica-host (default)", lambda p: [str(HOST), str(GUEST), "--addr", f"127.0.0.1:{p}"],
               compare_with="wasmtime serve (reuse 1000)"),
        Server("replica-host (strict)", lambda p: [str(HOST), str(GUEST), "--addr", f"127.0.0.1:{p}", "--strict"],
               compare_with="wasmtime serve (default)"),
        Server("replica-host (0.3 guest)", lambda p: [str(HOST), str(GUEST_P3), "--addr", f"127.0.0.1:{p}"],
               compare_with="wasmtime serve (0.3 guest)"),
        Server("wasmtime serve (default)", lambda p: serve + ["--addr", f"127.0.0.1:{p}", str(GUEST)]),
        # 0.3 instances are reused (and serve requests at once) by default.
        Server("wasmtime serve (0.3 guest)", lambda p: serve + ["--addr", f"127.0.0.1:{p}", str(GUEST_P3)]),
        Server("wasmtime serve (reuse 1000)",
               lambda p: serve + ["--max-instance-reuse-count", "1000", "--addr", f"127.0.0.1:{p}", str(GUEST)]),
        Server("native hyper", lambda p: [str(NATIVE), f"127.0.0.1:{p}"]),
        Server("FastAPI + uvicorn", lambda p: [python, "-m", "uvicorn", "fastapi_app:app", "--host", "127.0.0.1",
                                               "--port", str(p), "--workers", "1", "--log-level", "warning"],
               cwd=ROOT / "bench"),
    ]


def start(server: Server, port: int) -> subprocess.Popen:
    env = {"PATH": os.environ.get("PATH", ""), "SERVER_ID": "1", "HOME": os.environ.get("HOME", "/tmp")}
    env.update(server.env)
    return subprocess.Popen(server.command(port), cwd=server.cwd, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def wait_ready(proc: subprocess.Popen, port: int, limit: float = 30.0) -> float:
    """Seconds from now until /heartbeat answers 200."""
    start = time.perf_counter()
    while time.perf_counter() - start < limit:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}")
        if heartbeat_ok(port):
            return time.perf_counter() - start
        time.sleep(0.001)
    raise RuntimeError("server did not become ready")


def stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def cold_start(server: Server) -> float:
    """Median milliseconds from exec to the first 200 on /heartbeat."""
    times = []
    for _ in range(COLD_STARTS):
        port = free_port()
        t0 = time.perf_counter()
        proc = start(server, port)
        try:
            wait_ready(proc, port)
            times.append((time.perf_counter() - t0) * 1000)
        finally:
            stop(proc)
    return statistics.median(times)


UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3}


def to_ms(text: str) -> float:
    m = re.fullmatch(r"([\d.]+)(us|ms|s)", text)
    if not m:
        raise ValueError(f"unexpected latency {text!r}")
    return float(m.group(1)) * UNITS[m.group(2)]


# What every server must answer, byte for byte, with SERVER_ID=1.
EXPECTED = {
    "/home": (200, b'{"message":"Hello from Server: 1","status":"successful"}'),
    "/heartbeat": (200, b""),
}


def check_answers(name: str, port: int) -> None:
    """Fails the run if a server answers a benchmarked path with other bytes."""
    for path, (status, body) in EXPECTED.items():
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as r:
            got = (r.status, r.read())
        if got != (status, body):
            raise RuntimeError(f"{name} answered GET {path} with {got}, expected {(status, body)}")


@dataclass
class Run:
    """One wrk run: successful (2xx) requests/s, latency, and what failed."""
    rps: float
    p50: float
    p99: float
    errors: int   # socket errors: connect, read, write, timeout
    non2xx: int   # answers that were not 2xx or 3xx


SECONDS = {"us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0}


def wrk(port: int, path: str, connections: int, duration: int, cpu: int | None = None) -> Run:
    """One wrk run (on CPU `cpu` only, if given). Requests/s counts only 2xx/3xx
    answers: wrk's own figure includes non-2xx answers, and socket errors are
    reported apart."""
    pin = ["taskset", "-c", str(cpu)] if cpu is not None else []
    out = subprocess.run(
        pin + ["wrk", "-t1", f"-c{connections}", f"-d{duration}s", "--latency", "--timeout", "5s",
               f"http://127.0.0.1:{port}{path}"],
        capture_output=True, text=True, check=True, timeout=duration + 30,
    ).stdout
    done = re.search(r"(\d+) requests in ([\d.]+)(us|ms|s|m),", out)
    requests, elapsed = int(done.group(1)), float(done.group(2)) * SECONDS[done.group(3)]
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    non2xx = int(non2xx.group(1)) if non2xx else 0
    errors = sum(int(n) for n in re.findall(r"(?:connect|read|write|timeout) (\d+)", out))
    p50 = to_ms(re.search(r"\s50%\s+(\S+)", out).group(1))
    p99 = to_ms(re.search(r"\s99%\s+(\S+)", out).group(1))
    return Run((requests - non2xx) / elapsed, p50, p99, errors, non2xx)


def peak_rss_mb(pid: int) -> float:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(re.search(r"VmHWM:\s+(\d+) kB", status).group(1)) / 1024


def median_of(runs: list[Run]) -> Run:
    """Medians of the figures, sums of the failures."""
    return Run(
        statistics.median(r.rps for r in runs),
        statistics.median(r.p50 for r in runs),
        statistics.median(r.p99 for r in runs),
        sum(r.errors for r in runs),
        sum(r.non2xx for r in runs),
    )


@dataclass
class Result:
    rps: dict = field(default_factory=dict)   # (path, conns) -> Run (medians; failures summed)
    rss_mb: float = 0.0
    cold_ms: float = 0.0


def measure(server: Server) -> Result:
    result = Result()
    port = free_port()
    proc = start(server, port)
    try:
        wait_ready(proc, port)
        check_answers(server.name, port)
        for path in PATHS:
            wrk(port, path, 32, 1)  # warm-up
        for path, conns in CELLS:
            run = median_of([wrk(port, path, conns, DURATION) for _ in range(RUNS)])
            result.rps[(path, conns)] = run
            print(f"  {path:<10} c={conns:<4} {run.rps:>10,.0f} req/s  p50 {run.p50:7.3f} ms  "
                  f"p99 {run.p99:7.3f} ms  errors {run.errors}  non-2xx {run.non2xx}", flush=True)
        result.rss_mb = peak_rss_mb(proc.pid)
    finally:
        stop(proc)
    result.cold_ms = cold_start(server)
    print(f"  peak RSS {result.rss_mb:.1f} MB, cold start {result.cold_ms:.1f} ms", flush=True)
    return result


def running(server: Server, pin: int | None = None):
    """Starts `server` (on CPU `pin` only, if given) and waits until it answers."""
    port = free_port()
    if pin is not None:
        server = Server(server.name, lambda p, c=server.command: ["taskset", "-c", str(pin)] + c(p),
                        server.cwd, server.env, server.compare_with)
    proc = start(server, port)
    wait_ready(proc, port)
    check_answers(server.name, port)
    wrk(port, KEY_PATH, KEY_CONNECTIONS, 1, cpu=None if pin is None else 1 - pin)  # warm-up
    return proc, port


def by_name(name: str) -> Server:
    return next(s for s in servers() if s.name == name)


# Servers of the pinned row: one thread serving, on CPU 0.
PINNED = {
    "replica-host, 1 worker": lambda p: [str(HOST), str(GUEST), "--addr", f"127.0.0.1:{p}", "--workers", "1"],
    "native hyper, 1 thread": lambda p: [str(NATIVE), f"127.0.0.1:{p}"],  # one CPU: one tokio worker
    "wasmtime serve (reuse 1000)": lambda p: [str(wasmtime_cli()), "serve", "-Scli", "--env", "SERVER_ID=1",
                                              "--max-instance-reuse-count", "1000", "--addr", f"127.0.0.1:{p}",
                                              str(GUEST)],
}


def pinned_row() -> dict[str, Run]:
    """Per-core efficiency: each server on CPU 0, wrk on CPU 1."""
    results = {}
    for name, command in PINNED.items():
        proc, port = running(Server(name, command), pin=0)
        try:
            results[name] = median_of([wrk(port, KEY_PATH, KEY_CONNECTIONS, DURATION, cpu=1) for _ in range(RUNS)])
        finally:
            stop(proc)
        print(f"  pinned {name:<28} {results[name].rps:>10,.0f} req/s  p99 {results[name].p99:.3f} ms", flush=True)
    return results


KEY_SERVERS = ["replica-host (default)", "wasmtime serve (reuse 1000)", "native hyper"]


def key_cell() -> dict[str, list[Run]]:
    """The key cell in KEY_RUNS alternating rounds of 5 s, every server up at once."""
    up = {name: running(by_name(name)) for name in KEY_SERVERS}
    results: dict[str, list[Run]] = {name: [] for name in KEY_SERVERS}
    try:
        for _ in range(KEY_RUNS):
            for name, (_, port) in up.items():
                results[name].append(wrk(port, KEY_PATH, KEY_CONNECTIONS, 5))
    finally:
        for proc, _ in up.values():
            stop(proc)
    for name, runs in results.items():
        rps = [r.rps for r in runs]
        print(f"  key {name:<28} median {statistics.median(rps):>10,.0f} req/s "
              f"({min(rps):,.0f}-{max(rps):,.0f}), p99 {statistics.median(r.p99 for r in runs):.3f} ms", flush=True)
    return results


def rss_mb(pid: int) -> float:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(re.search(r"VmRSS:\s+(\d+) kB", status).group(1)) / 1024


def hold_idle(port: int, count: int) -> list[socket.socket]:
    """Up to `count` keep-alive connections that each served one /heartbeat and
    then sit idle, as a load balancer's pool holds them; stops at the first
    that is not answered within 5 s (wasmtime serve 49 stops answering new
    connections at 1,000)."""
    held = []
    request = b"GET /heartbeat HTTP/1.1\r\nHost: bench\r\n\r\n"
    for _ in range(count):
        try:
            conn = socket.create_connection(("127.0.0.1", port), timeout=5)
            conn.sendall(request)
            reply = conn.recv(4096)
        except OSError:
            break
        if not reply.startswith(b"HTTP/1.1 200"):
            break
        held.append(conn)
    return held


IDLE_SERVERS = ["replica-host (default)", "wasmtime serve (default)", "native hyper"]


@dataclass
class IdleResult:
    held: int
    rss_before_mb: float
    rss_idle_mb: float
    run: Run


def idle_connections() -> dict[str, IdleResult]:
    """Throughput and memory with IDLE keep-alive connections held open."""
    import resource
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    results = {}
    for name in IDLE_SERVERS:
        proc, port = running(by_name(name))
        try:
            before = rss_mb(proc.pid)
            held = hold_idle(port, IDLE)
            idle = rss_mb(proc.pid)
            run = wrk(port, KEY_PATH, KEY_CONNECTIONS, DURATION)
            for conn in held:
                conn.close()
        finally:
            stop(proc)
        results[name] = IdleResult(len(held), before, idle, run)
        print(f"  idle: {name:<28} held {len(held):,} of {IDLE:,}; RSS {before:.1f} -> {idle:.1f} MB "
              f"({(idle - before) * 1024 * 1024 / max(len(held), 1):,.0f} B/connection), "
              f"{run.rps:>10,.0f} req/s (errors {run.errors})", flush=True)
    return results


@dataclass
class H2Run:
    """One h2load run: successful (2xx) requests/s, mean and slowest request
    time (h2load gives no percentiles), and what failed."""
    rps: float
    mean_ms: float
    max_ms: float
    failed: int   # requests failed, errored or timed out
    non2xx: int


def h2load(port: int, path: str, clients: int, streams: int, duration: int) -> H2Run:
    """One h2load run: `clients` HTTP/2 connections (cleartext, prior knowledge)
    from one thread, each with up to `streams` requests in flight."""
    out = subprocess.run(
        ["h2load", "-t1", f"-c{clients}", f"-m{streams}", f"-D{duration}", "--warm-up-time=1",
         f"http://127.0.0.1:{port}{path}"],
        capture_output=True, text=True, check=True, timeout=duration + 60,
    ).stdout
    finished = re.search(r"finished in ([\d.]+)(us|ms|s|m),", out)
    elapsed = float(finished.group(1)) * SECONDS[finished.group(2)]
    done = re.search(r"requests: \d+ total, \d+ started, \d+ done, (\d+) succeeded, (\d+) failed, "
                     r"(\d+) errored, (\d+) timeout", out)
    codes = re.search(r"status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx", out)
    ok = int(codes.group(1)) + int(codes.group(2))
    timing = re.search(r"time for request:\s+(\S+)\s+(\S+)\s+(\S+)", out)
    return H2Run(ok / elapsed, to_ms(timing.group(3)), to_ms(timing.group(2)),
                 int(done.group(2)) + int(done.group(3)) + int(done.group(4)),
                 int(codes.group(3)) + int(codes.group(4)))


# HTTP/2 cells: (clients, streams per client). One stream per connection, as
# the HTTP/1.1 key cell; and few connections carrying many streams, as a
# proxy that multiplexes (Envoy, gRPC-aware balancers) sends them.
H2_CELLS = [(KEY_CONNECTIONS, 1), (4, 32)]
H2_SERVERS = ["replica-host (default)", "native hyper"]


def http2_rows() -> dict[str, dict[tuple[int, int], H2Run]]:
    """/home over h2c, median of RUNS runs per cell."""
    results = {}
    for name in H2_SERVERS:
        proc, port = running(by_name(name))
        try:
            h2load(port, KEY_PATH, 4, 8, 1)  # warm-up
            cells = {}
            for clients, streams in H2_CELLS:
                runs = [h2load(port, KEY_PATH, clients, streams, DURATION) for _ in range(RUNS)]
                cells[(clients, streams)] = H2Run(
                    statistics.median(r.rps for r in runs), statistics.median(r.mean_ms for r in runs),
                    max(r.max_ms for r in runs), sum(r.failed for r in runs), sum(r.non2xx for r in runs))
                run = cells[(clients, streams)]
                print(f"  h2c {name:<24} c={clients:<3} m={streams:<3} {run.rps:>10,.0f} req/s  "
                      f"mean {run.mean_ms:.3f} ms  failed {run.failed}  non-2xx {run.non2xx}", flush=True)
            results[name] = cells
        finally:
            stop(proc)
    return results


def machine() -> str:
    cpu = "unknown CPU"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    return f"{os.cpu_count()} cores ({cpu}), Linux {platform.release()}"


@dataclass
class Growth:
    """How the cost grows: the pinned row, the key cell's runs, idle connections."""
    pinned: dict
    key: dict
    idle: dict
    http2: dict


@dataclass
class Instructions:
    """Instructions per request (bench/instructions.py): its table's lines and
    its figures by server and cell, and the tracing table's lines and figures
    by mode."""
    lines: list
    figures: dict
    traces_lines: list = field(default_factory=list)
    traces: dict = field(default_factory=dict)


def report(all_results: dict[str, Result], growth: Growth, counted: Instructions,
           started: datetime.datetime) -> str:
    native = all_results["native hyper"]
    lines = [
        "# Benchmark results",
        "",
        f"- date: {started:%Y-%m-%d %H:%M} UTC",
        f"- machine: {machine()}",
        f"- command: `make bench` (wrk -t1, {DURATION} s per run, median of {RUNS} runs; "
        f"cold start median of {COLD_STARTS})",
        "- load generator and servers share the machine; only ratios from one run are comparable",
        "",
        "## Instructions per request",
        "",
        "callgrind: one keep-alive connection, 300 requests of warm-up, then the total of 1,000 requests / 1,000 "
        "(user-space instructions, the same for the same binary and input whatever else the machine does; "
        "`bench/instructions.py`). This host with `--workers 1` unless said; h2c from h2load, one connection.",
        "",
        *counted.lines,
        "",
        "## What tracing costs",
        "",
        "The same count, this host with the 0.2 guest and `--workers 1`, exporting over OTLP http/protobuf to a "
        "real collector (rotel) on loopback with the batch processor's defaults, the exporter's threads counted; "
        "6 s of settling before each count ends (`bench/instructions.py --traces`).",
        "",
        *counted.traces_lines,
        "",
        "## Throughput and latency",
        "",
        "Every server's answers to the benchmarked paths were checked byte for byte before its load.",
        "req/s counts 2xx answers only; socket errors and non-2xx answers are counted apart (all runs of a cell).",
        "",
        "| server | path | conns | req/s | p50 ms | p99 ms | errors | non-2xx | vs wasmtime serve | vs native |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for name, result in all_results.items():
        server = next(s for s in servers() if s.name == name)
        for (path, conns), run in result.rps.items():
            baseline = all_results.get(server.compare_with) if server.compare_with else None
            vs_serve = f"{run.rps / baseline.rps[(path, conns)].rps:.2f}x" if baseline else ""
            vs_native = f"{run.rps / native.rps[(path, conns)].rps:.2f}x"
            lines.append(f"| {name} | {path} | {conns} | {run.rps:,.0f} | {run.p50:.3f} | {run.p99:.3f} "
                         f"| {run.errors} | {run.non2xx} | {vs_serve} | {vs_native} |")
    lines += [
        "",
        "## Memory and start-up",
        "",
        "| server | peak RSS under load (MB) | cold start to first 200 (ms) |",
        "| --- | ---: | ---: |",
    ]
    for name, result in all_results.items():
        lines.append(f"| {name} | {result.rss_mb:.1f} | {result.cold_ms:.1f} |")
    native_pinned = growth.pinned["native hyper, 1 thread"].rps
    lines += [
        "",
        "## Pinned single core",
        "",
        f"The server on CPU 0 with one thread serving, wrk on CPU 1 (`taskset`); {KEY_PATH}, "
        f"{KEY_CONNECTIONS} connections, median of {RUNS} runs.",
        "",
        "| server | req/s | p99 ms | vs native |",
        "| --- | ---: | ---: | ---: |",
    ]
    for name, run in growth.pinned.items():
        lines.append(f"| {name} | {run.rps:,.0f} | {run.p99:.3f} | {run.rps / native_pinned:.2f}x |")
    lines += [
        "",
        "## The key cell",
        "",
        f"{KEY_PATH}, {KEY_CONNECTIONS} connections: {KEY_RUNS} alternating rounds of 5 s, every server up at once.",
        "",
        "| server | median req/s | min-max req/s | median p99 ms | runs (req/s) |",
        "| --- | ---: | ---: | ---: | --- |",
    ]
    for name, runs in growth.key.items():
        rps = [r.rps for r in runs]
        lines.append(f"| {name} | {statistics.median(rps):,.0f} | {min(rps):,.0f}-{max(rps):,.0f} "
                     f"| {statistics.median(r.p99 for r in runs):.3f} | {', '.join(f'{v:,.0f}' for v in rps)} |")
    lines += [
        "",
        f"## {IDLE:,} idle keep-alive connections",
        "",
        f"Each connection served one /heartbeat and stays open; then {KEY_PATH} at {KEY_CONNECTIONS} connections.",
        "",
        "A server that stops answering new connections holds fewer (the first unanswered within 5 s ends the count).",
        "",
        "| server | connections held | RSS before (MB) | RSS with them (MB) | bytes per idle connection "
        "| req/s meanwhile | errors |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for name, idle in growth.idle.items():
        per = idle_bytes(idle)
        lines.append(f"| {name} | {idle.held:,} | {idle.rss_before_mb:.1f} | {idle.rss_idle_mb:.1f} | {per:,.0f} "
                     f"| {idle.run.rps:,.0f} | {idle.run.errors} |")
    native_h2 = growth.http2["native hyper"]
    lines += [
        "",
        "## HTTP/2 (cleartext, prior knowledge)",
        "",
        f"h2load -t1, {KEY_PATH}, {DURATION} s per run after 1 s of warm-up, median of {RUNS} runs; "
        "h2load reports the mean request time, not percentiles.",
        "",
        "| server | connections | streams each | req/s | mean ms | slowest ms | failed | non-2xx | vs native |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for name, cells in growth.http2.items():
        for (clients, streams), run in cells.items():
            lines.append(f"| {name} | {clients} | {streams} | {run.rps:,.0f} | {run.mean_ms:.3f} | {run.max_ms:.3f} "
                         f"| {run.failed} | {run.non2xx} | {run.rps / native_h2[(clients, streams)].rps:.2f}x |")
    lines += ["", "## Targets", ""] + targets(all_results, growth, counted) + [""]
    return "\n".join(lines)


def targets(r: dict[str, Result], growth: Growth, counted: Instructions) -> list[str]:
    key = (KEY_PATH, KEY_CONNECTIONS)

    def rps(name):
        return r[name].rps[key].rps

    def p99(name):
        return r[name].rps[key].p99

    ours, strict = "replica-host (default)", "replica-host (strict)"
    serve, reuse, native = "wasmtime serve (default)", "wasmtime serve (reuse 1000)", "native hyper"
    ours_p3, serve_p3 = "replica-host (0.3 guest)", "wasmtime serve (0.3 guest)"
    counts = counted.figures
    home = "/home HTTP/1.1"
    checks = [
        ("instructions per request, 0.2 guest ≤ 48,000",
         counts["replica-host, 0.2 guest, --workers 1"][home], -48000.0, ""),
        ("tracing, every request sampled: instructions per request ≤ 1.15x off",
         counted.traces["every request sampled and exported"] / counted.traces["tracing off"], -1.15, "x"),
        ("tracing, 1% sampled: instructions per request ≤ 1.02x off",
         counted.traces["1% sampled"] / counted.traces["tracing off"], -1.02, "x"),
        ("instructions per request, 0.3 guest ≤ 0.9x wasmtime serve's, the same timeout (ratio ≤ 0.9)",
         counts["replica-host, 0.3 guest, --workers 1"][home]
         / counts["wasmtime serve, 0.3 guest, -Wtimeout=10s"][home], -0.9, "x"),
        (f"0.3 guest ≥ 1.25x wasmtime serve on the same file ({KEY_PATH}, c={KEY_CONNECTIONS})",
         rps(ours_p3) / rps(serve_p3), 1.25, "x"),
        (f"default ≥ 1.4x wasmtime serve reuse ({KEY_PATH}, c={KEY_CONNECTIONS})", rps(ours) / rps(reuse), 1.4, "x"),
        (f"default ≥ 0.7x native hyper ({KEY_PATH}, c={KEY_CONNECTIONS})", rps(ours) / rps(native), 0.7, "x"),
        (f"strict ≥ 1.5x wasmtime serve default ({KEY_PATH}, c={KEY_CONNECTIONS})", rps(strict) / rps(serve), 1.5, "x"),
        ("default p99 ≤ wasmtime serve reuse p99 (ratio ≤ 1)", p99(ours) / p99(reuse), -1.0, "x"),
        ("strict p99 ≤ wasmtime serve default p99 (ratio ≤ 1)", p99(strict) / p99(serve), -1.0, "x"),
        ("cold start ≤ wasmtime serve (ratio ≤ 1)", r[ours].cold_ms / r[serve].cold_ms, -1.0, "x"),
        ("cold start median < 30 ms", r[ours].cold_ms, -30.0, " ms"),
        ("peak RSS ≤ wasmtime serve's (ratio ≤ 1)",
         max(r[ours].rss_mb, r[strict].rss_mb) / min(r[serve].rss_mb, r[reuse].rss_mb), -1.0, "x"),
        ("pinned single core ≥ 0.7x native hyper",
         growth.pinned["replica-host, 1 worker"].rps / growth.pinned["native hyper, 1 thread"].rps, 0.7, "x"),
        (f"RSS with {IDLE:,} idle connections ≤ wasmtime serve's, with as many as it holds (ratio ≤ 1)",
         growth.idle[ours].rss_idle_mb / growth.idle[serve].rss_idle_mb, -1.0, "x"),
        ("idle keep-alive connection ≤ 1.25x native hyper's memory",
         idle_bytes(growth.idle[ours]) / idle_bytes(growth.idle[native]), -1.25, "x"),
        ("0.3 peak RSS under 1,024 connections ≤ wasmtime serve's on the same file (ratio ≤ 1)",
         r[ours_p3].rss_mb / r[serve_p3].rss_mb, -1.0, "x"),
    ]
    lines = ["| target | measured | met |", "| --- | ---: | :---: |"]
    for label, value, bound, unit in checks:
        met = value >= bound if bound > 0 else value <= -bound
        shown = f"{value:,.0f}" if abs(value) >= 1000 else f"{value:.2f}{unit}"
        lines.append(f"| {label} | {shown} | {'yes' if met else 'NO'} |")
    return lines


def idle_bytes(idle) -> float:
    return (idle.rss_idle_mb - idle.rss_before_mb) * 1024 * 1024 / max(idle.held, 1)


def chart(all_results: dict[str, Result], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(all_results)
    conns = KEY_CONNECTIONS if KEY_CONNECTIONS in CONNECTIONS else CONNECTIONS[0]
    fig, ax = plt.subplots(figsize=(10, 5))
    width = 0.38
    for i, route in enumerate(PATHS):
        values = [all_results[n].rps[(route, conns)].rps for n in names]
        xs = [x + (i - 0.5) * width for x in range(len(names))]
        bars = ax.bar(xs, values, width, label=route)
        ax.bar_label(bars, labels=[f"{v / 1000:.0f}k" for v in values], fontsize=8, padding=2)
    ax.set_xticks(range(len(names)), [n.replace(" (", "\n(") for n in names], fontsize=8)
    ax.set_ylabel("requests/s")
    ax.set_title(f"Requests/s per server, wrk -t1 -c{conns}, median of {RUNS} runs ({machine()})", fontsize=9)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> None:
    for tool, hint in [("wrk", "apt-get install wrk"), ("taskset", "apt-get install util-linux"),
                       ("h2load", "apt-get install nghttp2-client"), ("valgrind", "apt-get install valgrind")]:
        if not shutil.which(tool):
            sys.exit(f"{tool} is missing: {hint}")
    for built in (HOST, GUEST, GUEST_P3, NATIVE):
        if not built.exists():
            sys.exit(f"{built} is missing: run `make bench`, which builds it")
    started = datetime.datetime.now(datetime.timezone.utc)
    results: dict[str, Result] = {}
    for server in servers():
        print(f"{server.name}", flush=True)
        results[server.name] = measure(server)
    print("how the cost grows", flush=True)
    growth = Growth(pinned=pinned_row(), key=key_cell(), idle=idle_connections(), http2=http2_rows())
    print("instructions per request (callgrind)", flush=True)
    import instructions
    counted = Instructions(*instructions.table(["/home", "/heartbeat"]))
    print("what tracing costs (callgrind)", flush=True)
    counted.traces_lines, counted.traces = instructions.traces_table()
    text = report(results, growth, counted, started)
    out = ROOT / "bench/results.md"
    out.write_text(text)
    chart(results, ROOT / "bench/results.png")
    print()
    print(text)
    print(f"written: {out.relative_to(ROOT)}, bench/results.png")


if __name__ == "__main__":
    main()
