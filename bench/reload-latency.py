#!/usr/bin/env python3
"""Change-to-visible latency of hot reload: commit to the SQLite database, then ask the
sidecar over its socket until an answer names the new snapshot version.

Starts its own authzd (so the notification path is known: --mode watch disables polling,
--mode poll disables the file watch), commits N small changes spaced by --gap, and
reports p50/p90/p99/max of the time from the commit returning to the first answer from
the new version, as text and JSON.

    bench/reload-latency.py --authzd .build/release/authzd --db DB --mode watch --commits 200

The database is changed (a group's name is toggled, or with --change grant the level of a
random project grant): use a scratch copy. --reload-mode picks authzd's reload mode (delta or
full); the reloader's load times (wall and thread CPU, from its log) and methods are reported
with the latencies.
"""

import argparse
import json
import os
import random
import re
import socket
import sqlite3
import struct
import subprocess
import sys
import tempfile
import time


def varint(value):
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def seat_type_request(call_id, user=b"u-000001"):
    inner = b"\x0a" + varint(len(user)) + user           # SeatType.user = 1
    payload = b"\x08" + varint(call_id) + b"\x62" + varint(len(inner)) + inner  # call_id, seat_type = 12
    return b"\x00" + struct.pack(">I", len(payload)) + payload


def read_exact(sock, count):
    data = bytearray()
    while len(data) < count:
        chunk = sock.recv(count - len(data))
        if not chunk:
            raise RuntimeError("the sidecar closed the connection")
        data += chunk
    return bytes(data)


def response_version(sock):
    """Reads one response frame; returns (status code, snapshot_version)."""
    header = read_exact(sock, 5)
    payload = read_exact(sock, struct.unpack(">I", header[1:])[0])
    i, code, version = 0, 0, 0
    while i < len(payload):
        key, i = decode_varint(payload, i)
        field, wire = key >> 3, key & 7
        if wire == 0:
            value, i = decode_varint(payload, i)
            if field == 3:
                version = value
        elif wire == 2:
            length, i = decode_varint(payload, i)
            if field == 2:  # RpcStatus {code = 1, message = 2}
                j = i
                while j < i + length:
                    k, j = decode_varint(payload, j)
                    if k >> 3 == 1 and k & 7 == 0:
                        code, j = decode_varint(payload, j)
                    elif k & 7 == 2:
                        n, j = decode_varint(payload, j)
                        j += n
                    else:
                        _, j = decode_varint(payload, j)
            i += length
        else:
            raise RuntimeError(f"unexpected wire type {wire}")
    return code, version


def decode_varint(data, i):
    shift = result = 0
    while True:
        byte = data[i]
        i += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, i
        shift += 7


def percentile(sorted_values, p):
    if not sorted_values:
        return float("nan")
    index = min(len(sorted_values) - 1, max(0, int(round(p / 100 * len(sorted_values) + 0.5)) - 1))
    return sorted_values[index]


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--authzd", required=True)
    parser.add_argument("--db", required=True)
    parser.add_argument("--mode", choices=["watch", "poll"], default="watch")
    parser.add_argument("--poll-interval", default="1s")
    parser.add_argument("--commits", type=int, default=200)
    parser.add_argument("--gap-ms", type=float, default=20, help="pause after each change became visible (randomised ±50%%)")
    parser.add_argument("--probe-interval-ms", type=float, default=0,
                        help="pause between probing requests (0: back to back; use a few ms when a load takes long, so the probing does not compete with it)")
    parser.add_argument("--change", choices=["group-name", "grant"], default="group-name")
    parser.add_argument("--reload-mode", choices=["delta", "full"], default=None)
    parser.add_argument("--json", help="write the results here")
    parser.add_argument("--label", default="")
    args = parser.parse_args()

    scratch = tempfile.mkdtemp(prefix="reload-latency-")
    sock_path = os.path.join(scratch, "authz.sock")
    flags = ["--no-watch", "--poll-interval", args.poll_interval] if args.mode == "poll" else ["--watch", "--poll-interval", "0"]
    log = open(os.path.join(scratch, "authzd.log"), "w")
    if args.reload_mode:
        flags += ["--reload-mode", args.reload_mode]
    daemon = subprocess.Popen([args.authzd, "--db", args.db, "--socket", sock_path, "--log-level", "info"] + flags, stderr=log)
    try:
        sock = None
        deadline = time.monotonic() + 120
        while sock is None:
            try:
                s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                s.connect(sock_path)
                sock = s
            except OSError:
                if time.monotonic() > deadline or daemon.poll() is not None:
                    raise RuntimeError("authzd did not start; see " + log.name)
                time.sleep(0.05)
        db = sqlite3.connect(args.db, isolation_level=None)
        db.execute("PRAGMA busy_timeout = 5000")
        max_grant = db.execute("SELECT max(pk) FROM project_grants").fetchone()[0] or 0
        call = 0
        latencies = []
        probes = 0
        for n in range(args.commits):
            db.execute("BEGIN IMMEDIATE")
            if args.change == "grant":
                db.execute("UPDATE project_grants SET level = CASE WHEN level = 'can_view' THEN 'can_edit' ELSE 'can_view' END "
                           "WHERE pk = (SELECT min(pk) FROM project_grants WHERE pk >= ?)", (random.randint(1, max_grant),))
            else:
                db.execute("UPDATE groups SET name = CASE WHEN name LIKE '%~' THEN substr(name, 1, length(name) - 1) ELSE name || '~' END WHERE pk = (SELECT min(pk) FROM groups)")
            db.execute("COMMIT")
            committed = time.monotonic()
            target = db.execute("SELECT version FROM meta").fetchone()[0]
            while True:
                call += 1
                probes += 1
                sock.sendall(seat_type_request(call))
                code, version = response_version(sock)
                if code != 0:
                    raise RuntimeError(f"the sidecar answered status {code}")
                if version >= target:
                    latencies.append(time.monotonic() - committed)
                    break
                if time.monotonic() - committed > 30:
                    raise RuntimeError(f"version {target} not visible after 30 s")
                if args.probe_interval_ms:
                    time.sleep(args.probe_interval_ms / 1000)
            if args.gap_ms:
                time.sleep(args.gap_ms / 1000 * random.uniform(0.5, 1.5))
            if (n + 1) % 50 == 0:
                print(f"  {n + 1}/{args.commits} commits", file=sys.stderr)
        time.sleep(0.5)
        log.flush()
        text = open(log.name).read()
        loads = []
        for line in text.splitlines():
            if "reloaded the workspace snapshot" not in line:
                continue
            fields = dict(re.findall(r'([a-z-]+)=(\S+)', line))
            if "load-us" in fields:
                loads.append((fields.get("method", "full"), int(fields["load-us"]), int(fields.get("load-cpu-us", "0"))))
        values = sorted(v * 1000 for v in latencies)
        result = {
            "label": args.label, "mode": args.mode, "db": args.db, "commits": len(values),
            "poll_interval": args.poll_interval if args.mode == "poll" else None,
            "p50_ms": percentile(values, 50), "p90_ms": percentile(values, 90),
            "p99_ms": percentile(values, 99), "max_ms": values[-1], "mean_ms": sum(values) / len(values),
            "probe_requests": probes, "probe_interval_ms": args.probe_interval_ms,
            "change": args.change, "reload_mode": args.reload_mode,
            "loads": len(loads), "load_methods": {m: sum(1 for x in loads if x[0] == m) for m in {x[0] for x in loads}},
        }
        if loads:
            wall = sorted(x[1] / 1000 for x in loads)
            cpu = sorted(x[2] / 1000 for x in loads)
            result.update({
                "load_wall_p50_ms": percentile(wall, 50), "load_wall_p99_ms": percentile(wall, 99),
                "load_cpu_p50_ms": percentile(cpu, 50), "load_cpu_p99_ms": percentile(cpu, 99), "load_cpu_max_ms": cpu[-1],
            })
        print(f"{args.label or args.mode}: {len(values)} commits, change-to-visible "
              f"p50 {result['p50_ms']:.1f} ms, p90 {result['p90_ms']:.1f} ms, p99 {result['p99_ms']:.1f} ms, max {result['max_ms']:.1f} ms")
        if loads:
            print(f"{args.label or args.mode}: {len(loads)} loads {result['load_methods']}, load wall p50 {result['load_wall_p50_ms']:.2f} ms "
                  f"p99 {result['load_wall_p99_ms']:.2f} ms, load CPU p50 {result['load_cpu_p50_ms']:.2f} ms p99 {result['load_cpu_p99_ms']:.2f} ms")
        if args.json:
            with open(args.json, "w") as f:
                json.dump(result, f, indent=2)
    finally:
        daemon.terminate()
        daemon.wait(timeout=30)
        log.close()


if __name__ == "__main__":
    main()
