"""What the benchmark's scripts share: where things are, and how to find a free
port and a healthy server."""

from __future__ import annotations

import socket
import sys
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
GUEST = ROOT / "target/wasm32-wasip2/guest/replica_guest.wasm"
# The same routes as a wasi:http 0.3 component.
GUEST_P3 = ROOT / "target/wasm32-wasip2/guest/replica_guest_p3.wasm"
HOST = ROOT / "target/release/replica-host"
NATIVE = ROOT / "target/release/replica-native"
VENV = ROOT / ".venv"


def wasmtime_cli() -> Path:
    found = sorted(VENV.glob("lib/python3*/site-packages/wasmtime_cli/wasmtime"))
    if not found:
        sys.exit("the wasmtime CLI is missing: run `make bench`, which installs it into .venv")
    return found[0]


def rotel() -> Path:
    """rotel-agent, the OpenTelemetry collector the trace benchmark exports to."""
    found = sorted(VENV.glob("lib/python3*/site-packages/rotel/rotel-agent"))
    if not found:
        sys.exit("rotel is missing: run `make bench`, which installs it into .venv")
    return found[0]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def heartbeat_ok(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/heartbeat", timeout=1) as r:
            return r.status == 200
    except OSError:
        return False
