#!/usr/bin/env python3
"""A/B: two builds of a server under the same wrk load, in alternating runs.

    bench/ab.py OLD_BINARY NEW_BINARY [--guest G] [--path /home] [--conns 32]
                [--seconds 5] [--rounds 5] [-- extra host flags]

Each round runs OLD then NEW (a fresh process each, after a warm-up), each with
`wrk -t1`; prints every run and the medians, and NEW/OLD. Requests/s counts
2xx answers only. For measuring one change to the request path; the figures
are only comparable within one invocation.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import run as bench  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("old")
    parser.add_argument("new")
    parser.add_argument("--guest", default=str(bench.GUEST))
    parser.add_argument("--path", default="/home")
    parser.add_argument("--conns", type=int, default=32)
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=5)
    # Anything else is a flag for both hosts (--strict, --workers 1, ...).
    args, extra = parser.parse_known_args()
    args.extra = [flag for flag in extra if flag != "--"]

    results: dict[str, list[bench.Run]] = {"old": [], "new": []}
    for round_ in range(args.rounds):
        for label, binary in (("old", args.old), ("new", args.new)):
            server = bench.Server(label, lambda p, b=binary: [b, args.guest, "--addr", f"127.0.0.1:{p}", *args.extra])
            port = bench.free_port()
            proc = bench.start(server, port)
            try:
                bench.wait_ready(proc, port)
                bench.check_answers(label, port)
                bench.wrk(port, args.path, args.conns, 1)  # warm-up
                run = bench.wrk(port, args.path, args.conns, args.seconds)
            finally:
                bench.stop(proc)
            results[label].append(run)
            print(f"round {round_ + 1} {label}: {run.rps:>9,.0f} req/s  p50 {run.p50:.3f} ms  "
                  f"p99 {run.p99:.3f} ms  errors {run.errors}  non-2xx {run.non2xx}", flush=True)
    med = {k: statistics.median(r.rps for r in v) for k, v in results.items()}
    p99 = {k: statistics.median(r.p99 for r in v) for k, v in results.items()}
    spread = {k: (min(r.rps for r in v), max(r.rps for r in v)) for k, v in results.items()}
    for k in ("old", "new"):
        print(f"{k}: median {med[k]:,.0f} req/s (range {spread[k][0]:,.0f}-{spread[k][1]:,.0f}), "
              f"median p99 {p99[k]:.3f} ms")
    print(f"new/old: {med['new'] / med['old']:.3f}x req/s, {p99['new'] / p99['old']:.2f}x p99")


if __name__ == "__main__":
    main()
