#!/usr/bin/env python3
"""Small helpers for bench/run.sh and bench/smoke.sh (standard library only).

    runlib.py wait-socket --socket PATH [--pid PID] [--timeout S]
        wait until PATH accepts a connection (exit 1 if PID dies or the timeout passes)
    runlib.py copy-db SRC DST
        consistent copy of a SQLite database (the backup API; WAL content included)
    runlib.py commit-loop --db PATH [--count N | --duration S] [--interval S] [--out FILE]
        commit one small change every --interval seconds, each in its own transaction
        (toggles a '~' suffix on the first group's name; every commit bumps the snapshot
        version); writes {"commits", "first_version", "last_version"} as JSON
    runlib.py line FILE.json
        one progress line for a loadgen result
    runlib.py peak --manifest M --workspace W --server S
        the highest median calls/s over that server's pipelined runs (integer)
    runlib.py reload-durations --log FILE
        load-ms of every "reloaded the workspace snapshot" line, as a JSON list
    runlib.py machine
        the machine as JSON: cores, CPU model, memory, kernel, load average now
    runlib.py status-field --socket PATH --authzctl BIN FIELD
        one field of `authzctl status` (empty if the call fails)
    runlib.py summarize --out DIR
        reads DIR/manifest.tsv, DIR/machine.json and the reload results; writes DIR/summary.json
"""

import argparse
import json
import os
import re
import signal
import socket
import sqlite3
import statistics
import sys
import time

LOADGEN_METRICS = {
    "calls_per_s": ("throughput", "calls_per_s"),
    "checks_per_s": ("throughput", "checks_per_s"),
    "p50_us": ("latency_us", "p50"),
    "p90_us": ("latency_us", "p90"),
    "p99_us": ("latency_us", "p99"),
    "p99_9_us": ("latency_us", "p99_9"),
    "max_us": ("latency_us", "max"),
    "mean_us": ("latency_us", "mean"),
    "server_us_per_call": ("cpu", "server_us_per_call"),
    "server_us_per_check": ("cpu", "server_us_per_check"),
    "loadgen_us_per_call": ("cpu", "loadgen_us_per_call"),
    "late": ("open_loop", "late"),
    "unsent": ("open_loop", "unsent"),
    "send_lag_max_us": ("open_loop", "send_lag_max_us"),
    "errors": ("errors", "total"),
}


def wait_socket(args):
    deadline = time.monotonic() + args.timeout
    while True:
        if args.pid:
            try:
                os.kill(args.pid, 0)
                with open(f"/proc/{args.pid}/stat") as f:
                    if f.read().split(") ", 1)[1].startswith("Z"):
                        raise ProcessLookupError
            except (ProcessLookupError, FileNotFoundError):
                print(f"the server (pid {args.pid}) exited before {args.socket} accepted connections", file=sys.stderr)
                return 1
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            s.connect(args.socket)
            return 0
        except OSError:
            pass
        finally:
            s.close()
        if time.monotonic() > deadline:
            print(f"{args.socket} did not accept connections within {args.timeout} s", file=sys.stderr)
            return 1
        time.sleep(0.02)


def copy_db(args):
    for suffix in ("", "-wal", "-shm", "-journal"):
        try:
            os.unlink(args.dst + suffix)
        except FileNotFoundError:
            pass
    src = sqlite3.connect(f"file:{args.src}?mode=ro", uri=True)
    dst = sqlite3.connect(args.dst)
    src.backup(dst)
    dst.close()
    src.close()
    return 0


def commit_loop(args):
    db = sqlite3.connect(args.db, isolation_level=None)
    db.execute("PRAGMA busy_timeout = 5000")
    stop = False

    def on_term(*_):
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, on_term)
    first = db.execute("SELECT version FROM meta").fetchone()[0]
    commits = 0
    start = time.monotonic()
    while not stop:
        if args.count is not None and commits >= args.count:
            break
        due = start + commits * args.interval
        if args.duration is not None and due - start >= args.duration:
            break
        pause = due - time.monotonic()
        if pause > 0:
            time.sleep(pause)
            if stop:
                break
        db.execute("BEGIN IMMEDIATE")
        db.execute("UPDATE groups SET name = CASE WHEN name LIKE '%~' THEN substr(name, 1, length(name) - 1) "
                    "ELSE name || '~' END WHERE pk = (SELECT min(pk) FROM groups)")
        db.execute("COMMIT")
        commits += 1
    last = db.execute("SELECT version FROM meta").fetchone()[0]
    result = {"commits": commits, "first_version": first, "last_version": last,
              "interval_s": args.interval, "elapsed_s": round(time.monotonic() - start, 3)}
    text = json.dumps(result)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text + "\n")
    else:
        print(text)
    return 0


def get(doc, path):
    for key in path:
        if not isinstance(doc, dict) or key not in doc:
            return None
        doc = doc[key]
    return doc


def metrics(doc):
    return {name: get(doc, path) for name, path in LOADGEN_METRICS.items()}


def fmt(value, digits=0):
    if value is None:
        return "-"
    return f"{value:,.{digits}f}"


def line(args):
    try:
        with open(args.file) as f:
            m = metrics(json.load(f))
    except (OSError, ValueError) as error:
        print(f"no result ({error})")
        return 0
    text = (f"{fmt(m['calls_per_s'])} calls/s, p50 {fmt(m['p50_us'], 1)} µs, p99 {fmt(m['p99_us'], 1)} µs, "
            f"server {fmt(m['server_us_per_call'], 2)} µs/call, errors {fmt(m['errors'])}")
    if m["unsent"]:
        text += f", UNSENT {m['unsent']}"
    print(text)
    return 0


def read_manifest(path):
    rows = []
    if not os.path.exists(path):
        return rows
    with open(path) as f:
        for raw in f:
            raw = raw.rstrip("\n")
            if not raw:
                continue
            workspace, server, scenario, config, run, rc, json_path, note = (raw.split("\t") + [""] * 8)[:8]
            rows.append({"workspace": workspace, "server": server, "scenario": scenario, "config": config,
                         "run": int(run), "rc": int(rc), "json": json_path, "note": note})
    return rows


def median(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def group_runs(rows):
    groups = {}
    for row in rows:
        key = (row["workspace"], row["server"], row["scenario"], row["config"])
        groups.setdefault(key, []).append(row)
    return groups


def peak(args):
    best = 0.0
    for (workspace, server, scenario, _), runs in group_runs(read_manifest(args.manifest)).items():
        if workspace != args.workspace or server != args.server or scenario != "pipelined":
            continue
        values = []
        for run in runs:
            try:
                with open(run["json"]) as f:
                    values.append(get(json.load(f), ("throughput", "calls_per_s")))
            except (OSError, ValueError):
                pass
        m = median(values)
        if m:
            best = max(best, m)
    print(int(best))
    return 0


RELOAD_LINE = re.compile(r"reloaded the workspace snapshot\b.*?\bload-ms=(\d+(?:\.\d+)?)")


def parse_reload_durations(path):
    values = []
    with open(path, errors="replace") as f:
        for text in f:
            if "reloaded the workspace snapshot" not in text:
                continue
            match = RELOAD_LINE.search(text)
            if match:
                values.append(float(match.group(1)))
            else:  # --log-format json
                try:
                    values.append(float(json.loads(text)["load-ms"]))
                except (ValueError, KeyError):
                    pass
    return values


def reload_durations(args):
    print(json.dumps(parse_reload_durations(args.log)))
    return 0


def load_json(path, default=None):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return default


def summarize(args):
    out = args.out
    rows = read_manifest(os.path.join(out, "manifest.tsv"))
    scenarios = []
    errors = []
    for (workspace, server, scenario, config), runs in group_runs(rows).items():
        per_run = []
        for run in sorted(runs, key=lambda r: r["run"]):
            doc = load_json(run["json"])
            m = metrics(doc) if doc else {name: None for name in LOADGEN_METRICS}
            note = json.loads(run["note"]) if run["note"].startswith("{") else {}
            per_run.append({"run": run["run"], "rc": run["rc"], "json": os.path.relpath(run["json"], out) if run["json"] else None,
                            **m, **{f"extra_{k}": v for k, v in note.items()}})
            if run["rc"] != 0 or (m["errors"] or 0) > 0 or doc is None:
                kinds = {k: v for k, v in (doc or {}).get("errors", {}).items() if k != "total" and v}
                errors.append({"workspace": workspace, "server": server, "scenario": scenario, "config": config,
                               "run": run["run"], "rc": run["rc"], "errors": m["errors"], "kinds": kinds,
                               "note": note.get("error") or ("no JSON result" if doc is None else "")})
        first = load_json(runs[0]["json"]) or {}
        options = first.get("options", {})
        entry = {
            "workspace": workspace, "server": server, "scenario": scenario, "config": config,
            "connections": options.get("connections"), "depth": options.get("depth"),
            # the rate from the config name ("r<calls/s>"): the loadgen's JSON prints it with %g
            "rate": int(config[1:]) if re.fullmatch(r"r\d+", config) else (options.get("rate") or None),
            "batch": options.get("batch") or None,
            "runs": len(per_run), "failed_runs": sum(1 for r in per_run if r["rc"] != 0),
            "median": {name: median([r[name] for r in per_run]) for name in LOADGEN_METRICS},
            "per_run": per_run,
        }
        for key in ("rate_basis", "commits", "versions_advanced"):
            vals = [r.get(f"extra_{key}") for r in per_run if r.get(f"extra_{key}") is not None]
            if vals:
                entry[key] = vals[0] if isinstance(vals[0], str) else median(vals)
        scenarios.append(entry)

    reload_latency = []
    directory = os.path.join(out, "reload")
    if os.path.isdir(directory):
        groups = {}
        for name in sorted(os.listdir(directory)):
            match = re.match(r"latency-(\w+)-(\w+)\.run(\d+)\.json$", name)
            if match:
                groups.setdefault((match.group(1), match.group(2)), []).append(load_json(os.path.join(directory, name)))
        order = {"demo": 0, "large": 1, "watch": 0, "poll": 1}
        for (workspace, mode), docs in sorted(groups.items(), key=lambda kv: (order.get(kv[0][0], 9), order.get(kv[0][1], 9))):
            docs = [d for d in docs if d]
            reload_latency.append({
                "workspace": workspace, "mode": mode, "runs": len(docs),
                "commits": docs[0]["commits"] if docs else None,
                "poll_interval": docs[0].get("poll_interval") if docs else None,
                "median": {k: median([d.get(k) for d in docs]) for k in ("p50_ms", "p90_ms", "p99_ms", "max_ms", "mean_ms")},
            })
        try:
            with open(os.path.join(directory, "failures.jsonl")) as f:
                errors.extend(json.loads(text) for text in f if text.strip())
        except OSError:
            pass

    duration = load_json(os.path.join(out, "reload", "duration.json"))
    if duration is not None:
        values = duration.get("load_ms", [])
        duration["median_ms"] = median(values)
        duration["max_ms"] = max(values) if values else None
        duration["count"] = len(values)

    under_load = None
    idle = next((s for s in scenarios if s["workspace"] == "large" and s["server"] == "authzd-epoll"
                 and s["scenario"] == "reload_idle"), None)
    busy = next((s for s in scenarios if s["workspace"] == "large" and s["server"] == "authzd-epoll"
                 and s["scenario"] == "reload_under_load"), None)
    if idle and busy:
        p_idle, p_busy = idle["median"]["p99_us"], busy["median"]["p99_us"]
        under_load = {"rate": busy["rate"], "idle_p99_us": p_idle, "reloading_p99_us": p_busy,
                      "idle_p50_us": idle["median"]["p50_us"], "reloading_p50_us": busy["median"]["p50_us"],
                      "ratio": (p_busy / p_idle) if p_idle and p_busy else None,
                      "commits_per_run": busy.get("commits"), "versions_advanced_per_run": busy.get("versions_advanced")}

    sizes = {}
    for workspace in ("demo", "large"):
        status = load_json(os.path.join(out, workspace, "status.json"))
        if status:
            sizes[workspace] = {k: status.get(k) for k in ("users", "groups", "assets", "projects", "grants", "snapshot_version")}
    summary = {
        "generated_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        **(load_json(os.path.join(out, "run.json"), {})),
        "workspace_sizes": sizes,
        "machine": load_json(os.path.join(out, "machine.json"), {}),
        "scenarios": scenarios,
        "reload_under_load": under_load,
        "reload_latency": reload_latency,
        "reload_duration": duration,
        "errors": errors,
        "authzd_errors": any(e.get("server", "").startswith("authzd") for e in errors),
    }
    with open(os.path.join(out, "summary.json"), "w") as f:
        json.dump(summary, f, indent=2)
        f.write("\n")
    return 0


def machine(args):
    import platform
    import subprocess
    model = ""
    try:
        for text in subprocess.run(["lscpu"], capture_output=True, text=True).stdout.splitlines():
            if text.startswith("Model name:"):
                model = text.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem_kib = 0
    with open("/proc/meminfo") as f:
        for text in f:
            if text.startswith("MemTotal:"):
                mem_kib = int(text.split()[1])
    with open("/proc/loadavg") as f:
        load = f.read().split()[:3]
    print(json.dumps({"nproc": os.cpu_count() if not hasattr(os, "sched_getaffinity") else len(os.sched_getaffinity(0)),
                      "cpu_model": model, "mem_gib": round(mem_kib / 1024 / 1024, 1), "kernel": platform.release(),
                      "loadavg": [float(x) for x in load]}))
    return 0


def status_field(args):
    import subprocess
    try:
        result = subprocess.run([args.authzctl, "status", "--socket", args.socket], capture_output=True, text=True, timeout=30)
        print(json.loads(result.stdout).get(args.field, ""))
    except (OSError, ValueError, subprocess.TimeoutExpired):
        print("")
    return 0


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("wait-socket")
    p.add_argument("--socket", required=True)
    p.add_argument("--pid", type=int)
    p.add_argument("--timeout", type=float, default=120)
    p.set_defaults(func=wait_socket)
    p = sub.add_parser("copy-db")
    p.add_argument("src")
    p.add_argument("dst")
    p.set_defaults(func=copy_db)
    p = sub.add_parser("commit-loop")
    p.add_argument("--db", required=True)
    p.add_argument("--count", type=int)
    p.add_argument("--duration", type=float)
    p.add_argument("--interval", type=float, default=1.0)
    p.add_argument("--out")
    p.set_defaults(func=commit_loop)
    p = sub.add_parser("line")
    p.add_argument("file")
    p.set_defaults(func=line)
    p = sub.add_parser("peak")
    p.add_argument("--manifest", required=True)
    p.add_argument("--workspace", required=True)
    p.add_argument("--server", required=True)
    p.set_defaults(func=peak)
    p = sub.add_parser("reload-durations")
    p.add_argument("--log", required=True)
    p.set_defaults(func=reload_durations)
    p = sub.add_parser("machine")
    p.set_defaults(func=machine)
    p = sub.add_parser("status-field")
    p.add_argument("--socket", required=True)
    p.add_argument("--authzctl", required=True)
    p.add_argument("field")
    p.set_defaults(func=status_field)
    p = sub.add_parser("summarize")
    p.add_argument("--out", required=True)
    p.set_defaults(func=summarize)
    args = parser.parse_args()
    sys.exit(args.func(args))


if __name__ == "__main__":
    main()
