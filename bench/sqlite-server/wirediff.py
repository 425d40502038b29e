#!/usr/bin/env python3
"""Protocol-level differential test of two servers speaking authz.v1 (proto/README.md).

    wirediff.py --queries FILE.jsonl --a SOCKET --b SOCKET [--seed N] [--rounds N]

Reads `authzctl check` queries (JSON Lines; an `expect` key is ignored) and asks both
servers the same requests, built here with a hand-written protobuf encoder (no library
needed):

  - every query as a single call, with random `required_level` / `required_access`,
    random `explain`, and `min_snapshot_version` 0, the current version or one more;
  - the queries again in Batch calls of random sizes (1 ... 256), explain on and off;
  - malformed requests: garbage, no method, an unknown method field, unknown enum values,
    empty / bad-byte / over-long ids, a batch over the limit, a batch check without a
    kind or with an unknown kind, an empty batch;
  - framing errors (flag byte 1, a declared length over 64 KiB), each on its own
    connection, which must be answered once and closed.

All calls are pipelined on one connection per server and matched by call_id. Responses
must be byte-identical (both servers pack with protobuf-c in field order), except Status
and Reload, where only the status code is compared when both have it (the baseline
answers UNIMPLEMENTED). Exits 1 on any difference and prints the first few.
"""

import argparse
import json
import random
import socket
import struct
import sys
import threading

# ---------------------------------------------------------------------------------------
# Protobuf encoding (just what authz.v1.Request needs)
# ---------------------------------------------------------------------------------------


def varint(n):
    if n < 0:
        n += 1 << 64
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def field_varint(number, value):
    return varint(number << 3) + varint(value) if value else b""


def field_bytes(number, data, always=False):
    if not data and not always:
        return b""
    return varint(number << 3 | 2) + varint(len(data)) + data


def field_string(number, text):
    return field_bytes(number, text.encode() if isinstance(text, str) else text)


LEVELS = ["none", "can_view_app", "can_view", "can_explore", "can_edit", "full_access"]
ACCESS = ["none", "view", "use"]


def check_body(query, required=0):
    """(method field number within Request, encoded message) of one query."""
    op = query["op"]
    user = query.get("user", "")
    if op == "effective_permission":
        return 11, field_string(1, user) + field_string(2, query["project"]) + field_varint(3, required)
    if op == "can_use":
        return 10, (field_string(1, user) + field_string(2, query["asset"]) + field_string(3, query.get("project", ""))
                    + field_varint(4, required))
    if op == "seat_type":
        return 12, field_string(1, user)
    if op == "capabilities":
        return 13, field_string(1, user)
    raise ValueError(op)


def request(call_id, method_number=None, body=b"", explain=False, min_version=0, extra=b""):
    out = field_varint(1, call_id) + field_varint(2, min_version) + field_varint(4, 1 if explain else 0)
    if method_number is not None:
        out += field_bytes(method_number, body, always=True)
    return out + extra


def batch_body(checks):
    """checks: list of (request method number, body) or raw Check bytes."""
    out = b""
    for check in checks:
        if isinstance(check, bytes):
            encoded = check
        else:
            number, body = check
            encoded = field_bytes(number - 9, body, always=True)  # Check.kind: 1..4
        out += field_bytes(1, encoded, always=True)
    return out


def frame(payload, flag=0):
    return bytes([flag]) + struct.pack(">I", len(payload)) + payload


# ---------------------------------------------------------------------------------------
# Protobuf decoding (generic, for call ids and readable diffs)
# ---------------------------------------------------------------------------------------


def read_varint(data, i):
    shift = value = 0
    while True:
        b = data[i]
        i += 1
        value |= (b & 0x7F) << shift
        shift += 7
        if not b & 0x80:
            return value, i


def fields(data):
    i = 0
    out = []
    while i < len(data):
        tag, i = read_varint(data, i)
        number, kind = tag >> 3, tag & 7
        if kind == 0:
            value, i = read_varint(data, i)
        elif kind == 2:
            length, i = read_varint(data, i)
            value = data[i:i + length]
            i += length
        elif kind == 1:
            value = data[i:i + 8]
            i += 8
        elif kind == 5:
            value = data[i:i + 4]
            i += 4
        else:
            raise ValueError("bad wire type")
        out.append((number, value))
    return out


def dump(data, depth=0):
    """A readable rendering of a message whose schema we do not need to know."""
    parts = []
    try:
        for number, value in fields(data):
            if isinstance(value, int):
                parts.append(f"{number}:{value}")
            else:
                try:
                    text = value.decode()
                    printable = text.isprintable() and text != ""
                except UnicodeDecodeError:
                    printable = False
                if printable and depth > 0 and not _looks_like_message(value):
                    parts.append(f"{number}:{text!r}")
                else:
                    parts.append(f"{number}:{{{dump(value, depth + 1)}}}")
    except (ValueError, IndexError):
        return repr(bytes(data))
    return " ".join(parts)


def _looks_like_message(value):
    try:
        return bool(fields(value)) and not value.decode().isprintable()
    except (ValueError, IndexError, UnicodeDecodeError):
        return False


def call_id_of(payload):
    for number, value in fields(payload):
        if number == 1 and isinstance(value, int):
            return value
    return 0


def status_code_of(payload):
    for number, value in fields(payload):
        if number == 2 and not isinstance(value, int):
            for n, v in fields(value):
                if n == 1:
                    return v
            return 0
    return 0


def snapshot_version_of(payload):
    for number, value in fields(payload):
        if number == 3 and isinstance(value, int):
            return value
    return 0


# ---------------------------------------------------------------------------------------
# Transport
# ---------------------------------------------------------------------------------------


def connect(path):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.connect(path)
    return s


def read_frames(sock, expected=None):
    """Reads frames until EOF or `expected` frames; returns (payloads, eof_seen)."""
    buffer = bytearray()
    payloads = []
    eof = False
    while expected is None or len(payloads) < expected:
        try:
            chunk = sock.recv(1 << 20)
        except socket.timeout:
            break
        if not chunk:
            eof = True
            break
        buffer += chunk
        while len(buffer) >= 5:
            length = struct.unpack(">I", buffer[1:5])[0]
            if len(buffer) < 5 + length:
                break
            payloads.append(bytes(buffer[5:5 + length]))
            del buffer[:5 + length]
    return payloads, eof


def exchange(path, frames):
    """Pipelines `frames` on one connection; returns {call_id: payload}."""
    sock = connect(path)
    data = b"".join(frames)

    def writer():
        sock.sendall(data)

    thread = threading.Thread(target=writer)
    thread.start()
    payloads, _ = read_frames(sock, expected=len(frames))
    thread.join()
    sock.close()
    answers = {}
    for payload in payloads:
        answers[call_id_of(payload)] = payload
    if len(payloads) != len(frames):
        raise SystemExit(f"{path}: {len(payloads)} responses for {len(frames)} requests")
    return answers


def one_shot(path, raw, half_close=True):
    """Sends raw bytes on a fresh connection (then shuts down the sending side unless
    `half_close` is false); returns (responses, closed_by_server)."""
    sock = connect(path)
    sock.sendall(raw)
    if half_close:
        sock.shutdown(socket.SHUT_WR)
    sock.settimeout(3)
    payloads, eof = read_frames(sock)
    sock.close()
    return payloads, eof


# ---------------------------------------------------------------------------------------
# The test
# ---------------------------------------------------------------------------------------


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--queries", required=True)
    parser.add_argument("--a", required=True, help="reference server socket (authzd)")
    parser.add_argument("--b", required=True, help="server under test socket")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=1, help="times to repeat the random single/batch passes")
    args = parser.parse_args()

    rng = random.Random(args.seed)
    queries = []
    with open(args.queries) as f:
        for line in f:
            line = line.strip()
            if line:
                q = json.loads(line)
                q.pop("expect", None)
                queries.append(q)

    # The current snapshot version, from a first call to the reference.
    probe = exchange(args.a, [frame(request(1, *check_body({"op": "seat_type", "user": "x"})))])
    version = snapshot_version_of(probe[1])

    cases = []  # (call_id, frame bytes, description, compare_mode)
    next_id = [100]

    def add(payload_builder, description, mode="exact"):
        call_id = next_id[0]
        next_id[0] += 1
        cases.append((call_id, frame(payload_builder(call_id)), description, mode))

    def required_for(query):
        if rng.random() < 0.4:
            return 0
        if query["op"] == "effective_permission":
            return rng.randint(1, 6)
        if query["op"] == "can_use":
            return rng.randint(1, 3)
        return 0

    for _ in range(args.rounds):
        # Single calls.
        for q in queries:
            required = required_for(q)
            number, body = check_body(q, required)
            explain = rng.random() < 0.5
            r = rng.random()
            min_version = 0 if r < 0.8 else (version if r < 0.9 else version + 1)
            add(lambda cid, n=number, b=body, e=explain, m=min_version: request(cid, n, b, e, m),
                f"single {json.dumps(q)} required={required} explain={explain} min_version={min_version}")
        # Batches.
        shuffled = queries[:]
        rng.shuffle(shuffled)
        i = 0
        while i < len(shuffled):
            size = rng.choice([1, 2, 5, 17, 64, 255, 256]) if rng.random() < 0.5 else rng.randint(1, 256)
            chunk = shuffled[i:i + size]
            i += size
            checks = [check_body(q, required_for(q)) for q in chunk]
            explain = rng.random() < 0.5
            body = batch_body(checks)
            if len(frame(body)) > 60000:  # stay under the 64 KiB request limit
                half = len(checks) // 2
                for part in (checks[:half], checks[half:]):
                    b = batch_body(part)
                    add(lambda cid, b=b, e=explain: request(cid, 14, b, e), f"batch of {len(part)}")
                continue
            add(lambda cid, b=body, e=explain: request(cid, 14, b, e), f"batch of {len(checks)} explain={explain}")

    # Malformed and edge requests.
    q_ep = check_body({"op": "effective_permission", "user": "u", "project": "p"})
    add(lambda cid: request(cid, 14, b"", True), "empty batch")
    add(lambda cid: request(cid, 14, b"", False, version + 5), "empty batch, min_version too new")
    add(lambda cid: request(cid), "no method")
    add(lambda cid: request(cid, extra=field_bytes(20, b"\x08\x01", always=True)), "unknown method field 20")
    add(lambda cid: request(cid, extra=field_varint(9, 5)), "unknown field 9, no method")
    add(lambda cid: field_varint(1, cid) + b"\x0a\xff\xff", "garbage after call_id")
    add(lambda cid: field_varint(1, cid) + b"\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff", "bad varint")
    add(lambda cid: request(cid, 11, field_string(1, "u") + field_string(2, "p") + field_varint(3, 42)),
        "required_level 42")
    add(lambda cid: request(cid, 11, field_string(1, "u") + field_string(2, "p") + field_varint(3, -1)),
        "required_level -1")
    add(lambda cid: request(cid, 10, field_string(1, "u") + field_string(2, "a") + field_varint(4, 4)),
        "required_access 4")
    add(lambda cid: request(cid, 11, field_string(1, "u")), "empty project")
    add(lambda cid: request(cid, 10, field_string(1, "u")), "empty asset")
    add(lambda cid: request(cid, 10, field_string(1, "u") + field_string(2, "a") + field_string(3, "p q")),
        "bad byte in project")
    add(lambda cid: request(cid, 12, field_string(1, "bad/id")), "bad byte in seat user")
    add(lambda cid: request(cid, 13, field_string(1, "x" * 129)), "129-byte capabilities user")
    add(lambda cid: request(cid, 13, field_string(1, "x" * 128)), "128-byte capabilities user")
    add(lambda cid: request(cid, 12, field_string(1, "é")), "non-ASCII user")
    add(lambda cid: request(cid, 11, field_string(1, "u") + field_string(2, "x" * 128 + "/")),
        "bad byte at 128")
    add(lambda cid: request(cid, 14, batch_body([q_ep] * 257)), "batch of 257")
    add(lambda cid: request(cid, 14, batch_body([q_ep, b""])), "batch check without kind")
    add(lambda cid: request(cid, 14, batch_body([q_ep, field_bytes(9, b"", always=True)])),
        "batch check with unknown kind 9")
    add(lambda cid: request(cid, 14, batch_body([q_ep, (10, field_string(1, "u"))])), "batch check empty asset")
    add(lambda cid: request(cid, 14, batch_body([(12, field_string(1, "ok")), (13, field_string(1, "a b"))])),
        "batch check bad id")
    add(lambda cid: request(cid, 11, field_string(1, "u") + field_string(2, "p"), False, version + 1),
        "min_version too new")
    add(lambda cid: request(cid, 15), "status", mode="code-if-both")
    add(lambda cid: request(cid, 16), "reload", mode="code")

    frames = [c[1] for c in cases]
    answers_a = exchange(args.a, frames)
    answers_b = exchange(args.b, frames)
    # Garbage payload without a readable call id: alone on a connection (call_id 0).
    extra = [(frame(b"\xff\xff\xff"), "garbage, no call id"), (frame(b""), "empty payload")]

    failures = []
    compared = 0
    for call_id, _, description, mode in cases:
        a = answers_a.get(call_id)
        b = answers_b.get(call_id)
        compared += 1
        if a is None or b is None:
            failures.append(f"{description}: missing response (a={a is not None}, b={b is not None})")
            continue
        if mode == "exact":
            if a != b:
                failures.append(f"{description}:\n    authzd:   {dump(a)}\n    baseline: {dump(b)}")
        elif mode == "code":
            if status_code_of(a) != status_code_of(b):
                failures.append(f"{description}: codes {status_code_of(a)} vs {status_code_of(b)}")
        # code-if-both: Status is implemented by authzd only; nothing to compare.

    for raw, description in extra:
        pa, _ = one_shot(args.a, raw)
        pb, _ = one_shot(args.b, raw)
        compared += 1
        if pa != pb:
            failures.append(f"{description}:\n    authzd:   {[dump(p) for p in pa]}\n    baseline: {[dump(p) for p in pb]}")

    # Framing errors: one error response (call_id 0), then the server closes. A valid request
    # before the bad frame in the same write is answered first.
    good = frame(request(7, *q_ep))
    for raw, description, half_close in [
        (good + b"\x01" + struct.pack(">I", 3) + b"abc", "flag byte 1", False),
        (good + b"\x00" + struct.pack(">I", 65537), "declared length 65537", False),
        (b"\x00" + struct.pack(">I", 65536) + b"\x00" * 65536, "65536-byte payload (allowed)", True),
    ]:
        pa, closed_a = one_shot(args.a, raw, half_close)
        pb, closed_b = one_shot(args.b, raw, half_close)
        compared += 1
        if pa != pb or closed_a != closed_b:
            failures.append(f"{description}: closed {closed_a}/{closed_b}\n    authzd:   {[dump(p) for p in pa]}\n"
                            f"    baseline: {[dump(p) for p in pb]}")

    print(f"wirediff: {compared} calls compared ({len(queries)} queries, snapshot version {version}), "
          f"{len(failures)} differences")
    for failure in failures[:20]:
        print("  DIFF " + failure)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
