#!/usr/bin/env python3
"""Python client benchmark (issue 11): in one run, against one release authzd on the demo DB,

  (a) a bare Python socket: one pre-encoded EffectivePermission frame, sendall + recv_into
      exactly the response frame, decode it: the single-call round-trip floor from Python;
  (b) the sync Client: client.effective_permission(...) (one connection, one thread);
      (a) and (b) alternate in blocks of 250 calls on their own connections, so that both see
      the same load on a shared machine;
  (c) the AsyncClient: calls pipelined on one connection, `--in-flight` at a time, calls/s.

Each measurement is repeated `--runs` times, interleaved (a, b, c, a, b, c, ...); the report
gives the median of the runs' p50s (a, b), their ratio, and the median throughput (c).

    clients/python/.venv-test/bin/python bench/python-client.py --authzd /tmp/pybin/authzd-release \
        --authzctl /tmp/pybin/authzctl
"""

import argparse
import asyncio
import os
import shutil
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import time

from authz_sidecar import AsyncClient, Client
from authz_sidecar._proto import authz_pb2 as pb

USER, PROJECT = "linus", "revenue-dashboard"


def _bare_caller(path: str):
    """A bare socket: the request frame encoded once, sendall + recv_into exactly the response
    frame, and the response decoded (a caller needs the answer)."""
    request = pb.Request(call_id=1, effective_permission=pb.EffectivePermission(user=USER, project=PROJECT))
    payload = request.SerializeToString()
    frame = struct.pack(">BI", 0, len(payload)) + payload
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.connect(path)
    # The response size, learnt once: the loop then reads exactly that many bytes.
    sock.sendall(frame)
    header = sock.recv(5, socket.MSG_WAITALL)
    size = 5 + struct.unpack(">BI", header)[1]
    sock.recv(size - 5, socket.MSG_WAITALL)
    buf = bytearray(size)
    view = memoryview(buf)
    payload_view = view[5:size]
    parse = pb.Response.FromString
    sendall, recv_into = sock.sendall, sock.recv_into

    def call():
        sendall(frame)
        got = 0
        while got < size:
            got += recv_into(view[got:])
        return parse(payload_view)

    return call, sock.close


def _sync_caller(path: str):
    client = Client(path, pool_size=1)
    call = client.effective_permission
    return (lambda: call(USER, PROJECT)), client.close


def single_call_p50s(path: str, calls: int, block: int = 250):
    """The p50 round trip (µs) of the bare socket and of the sync Client, measured in
    alternating blocks of `block` calls, so that both see the same machine load."""
    bare, bare_close = _bare_caller(path)
    sync, sync_close = _sync_caller(path)
    for _ in range(200):
        bare()
        sync()
    samples = {"bare": [], "sync": []}
    clock = time.perf_counter_ns
    done = 0
    while done < calls:
        for name, call in (("bare", bare), ("sync", sync)):
            out = samples[name]
            for _ in range(block):
                t0 = clock()
                call()
                out.append(clock() - t0)
        done += block
    bare_close()
    sync_close()
    return statistics.median(samples["bare"]) / 1000.0, statistics.median(samples["sync"]) / 1000.0


async def _async_rate(path: str, total: int, in_flight: int) -> float:
    client = AsyncClient(path)
    await client.effective_permission(USER, PROJECT)
    remaining = total

    async def worker():
        nonlocal remaining
        while remaining > 0:
            remaining -= 1
            await client.effective_permission(USER, PROJECT)

    t0 = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(in_flight)))
    elapsed = time.perf_counter() - t0
    await client.close()
    return total / elapsed


def async_rate(path: str, total: int, in_flight: int) -> float:
    return asyncio.run(_async_rate(path, total, in_flight))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--authzd", default="/tmp/pybin/authzd-release")
    parser.add_argument("--authzctl", default="/tmp/pybin/authzctl")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--calls", type=int, default=20000, help="calls per single-call run")
    parser.add_argument("--async-calls", type=int, default=50000, help="calls per async run")
    parser.add_argument("--in-flight", type=int, default=256)
    args = parser.parse_args()

    scratch = tempfile.mkdtemp(prefix="authz-pybench-")
    db, path = os.path.join(scratch, "demo.db"), os.path.join(scratch, "authz.sock")
    subprocess.run([args.authzctl, "demo", "--db", db], check=True, capture_output=True)
    daemon = subprocess.Popen([args.authzd, "--db", db, "--socket", path, "--log-level", "warning"])
    try:
        for _ in range(100):
            if os.path.exists(path):
                break
            time.sleep(0.05)
        async_rate(path, 5000, args.in_flight)  # warm up
        bare, sync, rates = [], [], []
        for run in range(args.runs):
            b, s = single_call_p50s(path, args.calls)
            bare.append(b)
            sync.append(s)
            rates.append(async_rate(path, args.async_calls, args.in_flight))
            print(f"run {run + 1}: bare p50 {bare[-1]:.1f} µs, sync p50 {sync[-1]:.1f} µs "
                  f"(x{sync[-1] / bare[-1]:.3f}), async {rates[-1]:,.0f} calls/s", flush=True)
        b, s, r = statistics.median(bare), statistics.median(sync), statistics.median(rates)
        ratio = statistics.median(y / x for x, y in zip(bare, sync))
        print(f"median of {args.runs} runs: bare socket p50 {b:.1f} µs; sync Client p50 {s:.1f} µs; "
              f"ratio {ratio:.3f} (median of the runs' ratios; target <= 1.25); AsyncClient {r:,.0f} calls/s "
              f"({args.in_flight} in flight, one connection, one process)")
        print(f"load: {os.getloadavg()[0]:.2f} {os.getloadavg()[1]:.2f} {os.getloadavg()[2]:.2f} "
              f"(1/5/15 min) on {os.cpu_count()} CPUs; python {sys.version.split()[0]}")
    finally:
        daemon.terminate()
        daemon.wait()
        shutil.rmtree(scratch, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
