"""Runs the Autobahn TestSuite cases (fuzzingclient, through kosoku) against
the reference server's WebSocket echo, writes a summary, fails on any
failed case.

    python run.py --server target/debug/tidewire-server [--cases 1.* ...]
                  [--exclude 9.*] [--summary summary.json]

The server runs in conformance mode on a free loopback port; `/ws-echo` is
a WebSocket echo on the same frame layer (tungstenite configuration, caps,
close codes, closing sequence) as its Engine.IO WebSocket at `/socket.io/`.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import os
import platform
import re
import subprocess
import sys
import time
from pathlib import Path

import kosoku
from kosoku import FailureError, run_fuzzingclient

# Case 9.1.6 sends a 16 MiB message and 9.2.6 one of 16 MiB in frames: the
# echo gets a max payload above them (the frame layer's caps are tested
# separately, and cases 9.x measure speed, not limits).
MAX_PAYLOAD = 64 << 20
PASSING = {"OK", "NON-STRICT", "INFORMATIONAL"}
# Sections 12 and 13 test permessage-deflate (RFC 7692), an optional
# extension: the server does not offer it (engine.io's default is
# `perMessageDeflate: false` too), so those cases are UNIMPLEMENTED, which
# Autobahn reports apart from failures. Anything else unimplemented fails.
EXTENSION_SECTIONS = ("12.", "13.")


def failed(r) -> bool:
    if r.passed:
        return False
    return not (
        r.behavior.value == "UNIMPLEMENTED"
        and r.case_id.startswith(EXTENSION_SECTIONS)
        and r.behavior_close.value in PASSING
    )


def start_server(binary: str) -> tuple[subprocess.Popen[str], str]:
    env = dict(os.environ, RUST_LOG=os.environ.get("RUST_LOG", "warn"))
    proc = subprocess.Popen(
        [binary, "--conformance", "--port", "0", "--max-payload", str(MAX_PAYLOAD)],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env=env,
    )
    assert proc.stdout is not None
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        m = re.search(r"listening on http://(\S+)", line)
        if m:
            return proc, m.group(1)
    proc.kill()
    raise SystemExit("autobahn: the server did not start")


def summarize(results: list, seconds: float, cases: list[str] | None, exclude: list[str] | None) -> dict:
    behaviors = collections.Counter(r.behavior.value for r in results)
    closes = collections.Counter(r.behavior_close.value for r in results)
    failures = [
        {
            "case": r.case_id,
            "behavior": r.behavior.value,
            "behaviorClose": r.behavior_close.value,
            "result": r.result,
            "resultClose": r.result_close,
        }
        for r in results
        if failed(r)
    ]
    return {
        "tool": f"kosoku {getattr(kosoku, '__version__', '0.1.0')} (Autobahn TestSuite fuzzingclient cases)",
        "target": "tidewire-server --conformance --max-payload " + str(MAX_PAYLOAD) + ", ws://<loopback>/ws-echo",
        "python": platform.python_version(),
        "selection": {"cases": cases or ["*"], "exclude": exclude or []},
        "cases": len(results),
        "passed": sum(1 for r in results if r.passed),
        "unimplementedExtension": sum(1 for r in results if not r.passed and not failed(r)),
        "failed": len(failures),
        "seconds": round(seconds, 1),
        "behavior": dict(sorted(behaviors.items())),
        "behaviorClose": dict(sorted(closes.items())),
        "failures": failures,
        "nonStrictOrInformational": [
            {"case": r.case_id, "behavior": r.behavior.value, "behaviorClose": r.behavior_close.value}
            for r in results
            if r.passed and (r.behavior.value != "OK" or r.behavior_close.value != "OK")
        ],
    }


async def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--server", required=True, help="the tidewire-server binary")
    parser.add_argument("-i", "--cases", action="append", help="case ids or globs (default: all)")
    parser.add_argument("-x", "--exclude", action="append", help="case ids or globs to leave out")
    parser.add_argument("--parallelism", type=int, default=1)
    parser.add_argument("--summary", help="write the summary JSON here")
    args = parser.parse_args()

    proc, addr = start_server(args.server)
    url = f"ws://{addr}/ws-echo"
    started = time.monotonic()
    try:
        try:
            results = await run_fuzzingclient(url, args.cases, args.exclude, concurrency=args.parallelism)
        except FailureError as failure:
            results = failure.results
        seconds = time.monotonic() - started
        alive = proc.poll() is None
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
    summary = summarize(results, seconds, args.cases, args.exclude)
    summary["serverAliveAfterRun"] = alive
    if args.summary:
        Path(args.summary).write_text(json.dumps(summary, indent=2) + "\n")
    print(
        f"autobahn: {summary['cases']} cases, {summary['passed']} passed, "
        f"{summary['unimplementedExtension']} unimplemented (permessage-deflate), {summary['failed']} failed "
        f"in {summary['seconds']} s; behavior {summary['behavior']}, close {summary['behaviorClose']}"
    )
    for f in summary["failures"]:
        print(f"  FAILED {f['case']}: {f['behavior']} / {f['behaviorClose']}: {f['result']} {f['resultClose']}")
    if not results:
        print("autobahn: no case ran", file=sys.stderr)
        return 1
    if not alive:
        print("autobahn: the server died during the run", file=sys.stderr)
        return 1
    return 1 if summary["failed"] else 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
