#!/usr/bin/env python3
"""Instructions per request, counted by callgrind: the figure that does not move
with the machine (valgrind counts user-space instructions; the same binary and
input give the same total whatever else the machine does).

    bench/instructions.py [--quick]            the table, every server
    bench/instructions.py --ab OLD NEW [--guest G] [--path P] [-- extra flags]
                                               one change judged: OLD vs NEW host
    bench/instructions.py --traces             what tracing costs: off, every
                                               request sampled, 1% sampled

Method (shared/BENCHMARKS.md): the server under callgrind (this host with
--workers 1), one keep-alive connection, 300 requests of warm-up,
`callgrind_control -z`, 1,000 requests, `callgrind_control -d`; the dump's
total / 1,000. HTTP/1.1 requests come from this script over one socket;
cleartext HTTP/2 ones from `h2load -n N -c 1 -m 1` (one connection per batch,
whose set-up is spread over the batch). Kernel work is not counted.
`wasmtime serve` runs with `-Wtimeout=10s` where marked, so that both hosts can
stop a runaway guest. Needs valgrind (and h2load for the HTTP/2 rows).
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common as bench  # noqa: E402

WARM_UP = 300
COUNTED = 1000


@dataclass
class Server:
    name: str
    # The command for a port.
    command: object
    guest: Path | None = None


def http1_requests(port: int, path: str, count: int) -> None:
    """`count` GETs of `path` on one keep-alive connection, each answered 200."""
    with socket.create_connection(("127.0.0.1", port), timeout=60) as sock:
        reader = sock.makefile("rb")
        request = f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode()
        for _ in range(count):
            sock.sendall(request)
            status = reader.readline()
            if b" 200 " not in status:
                raise SystemExit(f"{path}: {status!r}")
            length, chunked = 0, False
            while (line := reader.readline()) not in (b"\r\n", b""):
                name, _, value = line.decode().partition(":")
                if name.lower() == "content-length":
                    length = int(value)
                elif name.lower() == "transfer-encoding" and "chunked" in value:
                    chunked = True
            if chunked:
                while (size := int(reader.readline().split(b";")[0], 16)) > 0:
                    reader.read(size + 2)
                reader.readline()
            else:
                reader.read(length)


def h2_requests(port: int, path: str, count: int) -> None:
    out = subprocess.run(["h2load", "-n", str(count), "-c", "1", "-m", "1", f"http://127.0.0.1:{port}{path}"],
                         capture_output=True, text=True, check=True).stdout
    if f"{count} succeeded" not in out:
        raise SystemExit(f"h2load {path}: {out}")


def total(dump: Path) -> int:
    for line in dump.read_text().splitlines():
        if line.startswith(("summary:", "totals:")):
            return int(line.split()[1])
    raise SystemExit(f"no total in {dump}")


def per_request(server: Server, path: str, h2: bool, extra_env: dict | None = None,
                settle: float = 0.0) -> float:
    """Instructions per request of `server` on `path`; `settle` seconds
    before the count ends (for the work a request leaves behind, as spans
    exported in batches)."""
    port = bench.free_port()
    with tempfile.TemporaryDirectory() as out:
        cmd = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}/cg.%p", *server.command(port)]
        env = {"PATH": os.environ.get("PATH", ""), "SERVER_ID": "1", "HOME": os.environ.get("HOME", "/tmp"),
               "REPLICA_CACHE_DIR": str(bench.ROOT / "target/bench-cache"), **(extra_env or {})}
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            deadline = time.time() + 600
            while not bench.heartbeat_ok(port):
                if proc.poll() is not None or time.time() > deadline:
                    raise SystemExit(f"{server.name} did not start under valgrind")
                time.sleep(0.5)
            send = h2_requests if h2 else http1_requests
            send(port, path, WARM_UP)
            subprocess.run(["callgrind_control", "-z", str(proc.pid)], check=True, capture_output=True)
            send(port, path, COUNTED)
            time.sleep(settle)
            subprocess.run(["callgrind_control", "-d", str(proc.pid)], check=True, capture_output=True)
            dumps = sorted(Path(out).glob(f"cg.{proc.pid}.*"), key=lambda p: p.stat().st_mtime)
            if not dumps:
                raise SystemExit("callgrind wrote no dump")
            return total(dumps[-1]) / COUNTED
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def host(binary: Path, guest: Path, *flags: str) -> Server:
    return Server(binary.name, lambda p: [str(binary), str(guest), "--addr", f"127.0.0.1:{p}",
                                          "--workers", "1", *flags], guest)


def servers() -> list[tuple[Server, bool]]:
    """Every server of the table, and whether it speaks cleartext HTTP/2."""
    wasmtime = str(bench.wasmtime_cli())
    serve = [wasmtime, "serve", "-Scli", "--env", "SERVER_ID=1"]

    def wasmtime_serve(name: str, guest: Path, *flags: str) -> Server:
        return Server(name, lambda p: [*serve, *flags, "--addr", f"127.0.0.1:{p}", str(guest)], guest)

    return [
        (Server("replica-host, 0.2 guest, --workers 1", host(bench.HOST, bench.GUEST).command), True),
        (Server("replica-host, 0.2 guest, default workers",
                lambda p: [str(bench.HOST), str(bench.GUEST), "--addr", f"127.0.0.1:{p}"]), True),
        (Server("replica-host, 0.3 guest, --workers 1", host(bench.HOST, bench.GUEST_P3).command), True),
        (Server("replica-host, 0.3 guest, default workers",
                lambda p: [str(bench.HOST), str(bench.GUEST_P3), "--addr", f"127.0.0.1:{p}"]), True),
        (wasmtime_serve("wasmtime serve, 0.2 guest, reuse 1000", bench.GUEST, "--max-instance-reuse-count", "1000"),
         False),
        (wasmtime_serve("wasmtime serve, 0.2 guest, reuse 1000, -Wtimeout=10s", bench.GUEST,
                        "--max-instance-reuse-count", "1000", "-Wtimeout=10s"), False),
        (wasmtime_serve("wasmtime serve, 0.3 guest", bench.GUEST_P3), False),
        (wasmtime_serve("wasmtime serve, 0.3 guest, -Wtimeout=10s", bench.GUEST_P3, "-Wtimeout=10s"), False),
        (Server("native hyper", lambda p: [str(bench.NATIVE), f"127.0.0.1:{p}"]), True),
    ]


def table(paths: list[str]) -> tuple[list[str], dict[str, dict[str, float]]]:
    """The table's markdown lines (printed as they come), and its figures by
    server and cell."""
    have_h2 = shutil.which("h2load") is not None
    cells = [(p, False) for p in paths] + ([(p, True) for p in paths] if have_h2 else [])
    names = [f"{p} {'h2c' if h2 else 'HTTP/1.1'}" for p, h2 in cells]
    lines = [f"| server | {' | '.join(names)} |",
             f"| --- |{' ---: |' * len(cells)}"]
    for line in lines:
        print(line, flush=True)
    figures: dict[str, dict[str, float]] = {}
    for server, speaks_h2 in servers():
        row = figures.setdefault(server.name, {})
        shown = []
        for (path, h2), name in zip(cells, names):
            if h2 and not speaks_h2:
                shown.append("")
                continue
            row[name] = value = per_request(server, path, h2)
            shown.append(f"{value:,.0f}")
        lines.append(f"| {server.name} | {' | '.join(shown)} |")
        print(lines[-1], flush=True)
    return lines, figures


def ab(old: Path, new: Path, guest: Path, path: str, flags: list[str]) -> None:
    counts = {}
    for label, binary in (("old", old), ("new", new)):
        counts[label] = per_request(host(binary, guest, *flags), path, False)
        print(f"{label} ({binary}): {counts[label]:,.0f} instructions per request", flush=True)
    print(f"new/old: {counts['new'] / counts['old']:.4f}x ({counts['new'] - counts['old']:+,.0f})")


def traces_table() -> tuple[list[str], dict[str, float]]:
    """Instructions per request of GET /home (0.2 guest, --workers 1) with
    tracing off, on with every request sampled and exported, and on at 1%
    (a ratio sampler: no request carries a trace here), exported over
    http/protobuf to a real collector (rotel, discarding what it takes) on
    loopback. The exporter's threads are the host's: their work is counted.
    Every mode settles 6 s before its count ends (the batch processor's
    5 s delay, its default), so that the spans of the counted requests are
    exported within it."""
    port, grpc = bench.free_port(), bench.free_port()
    collector = subprocess.Popen([str(bench.rotel()), "start", "--exporter", "blackhole",
                                  "--otlp-http-endpoint", f"127.0.0.1:{port}",
                                  "--otlp-grpc-endpoint", f"127.0.0.1:{grpc}"],
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 20
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if time.time() > deadline:
                    raise SystemExit("the collector (rotel) never listened")
                time.sleep(0.2)
        # The batch processor as an operator gets it (a batch at 512 spans or
        # every 5 s): the count settles 6 s, so every counted span is sent.
        on = {"OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{port}"}
        modes = [
            ("tracing off", {}),
            ("every request sampled and exported", on),
            ("1% sampled", {**on, "OTEL_TRACES_SAMPLER": "parentbased_traceidratio",
                            "OTEL_TRACES_SAMPLER_ARG": "0.01"}),
        ]
        lines = ["| tracing | /home HTTP/1.1 | vs off |", "| --- | ---: | ---: |"]
        for line in lines:
            print(line, flush=True)
        figures: dict[str, float] = {}
        for name, env in modes:
            figures[name] = value = per_request(host(bench.HOST, bench.GUEST), "/home", False, env, settle=6.0)
            lines.append(f"| {name} | {value:,.0f} | {value / figures['tracing off']:.3f}x |")
            print(lines[-1], flush=True)
        return lines, figures
    finally:
        collector.terminate()
        collector.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--ab", nargs=2, metavar=("OLD", "NEW"), type=Path)
    parser.add_argument("--guest", type=Path, default=bench.GUEST)
    parser.add_argument("--path", default="/home")
    parser.add_argument("--quick", action="store_true", help="/home only")
    parser.add_argument("--traces", action="store_true", help="what tracing costs")
    parser.add_argument("flags", nargs="*", help="host flags for --ab")
    args = parser.parse_args()
    if shutil.which("valgrind") is None:
        sys.exit("valgrind is missing: apt-get install valgrind")
    if args.ab:
        ab(*args.ab, args.guest, args.path, args.flags)
    elif args.traces:
        traces_table()
    else:
        table(["/home"] if args.quick else ["/home", "/heartbeat"])


if __name__ == "__main__":
    main()
