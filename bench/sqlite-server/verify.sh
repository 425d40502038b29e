#!/usr/bin/env bash
# Differential test of authz-sqlite-server (the SQL-per-request baseline) against the real
# sidecar, authzd. Exits non-zero on any difference.
#
#   bench/sqlite-server/verify.sh [--bin DIR] [--users N] [--queries N] [--seed S] [--keep]
#
#   --bin DIR      where authzd and authzctl are (default: $AUTHZ_BIN, else /tmp/authz-bin
#                  if it holds them, else `swift build -c release --show-bin-path`; this
#                  script never builds the Swift package)
#   --users N      users of the generated workspace (default 5000)
#   --queries N    random queries asked on the generated workspace (default 20000)
#   --seed S       seed of the generated workspace and of the queries (default 1)
#   --keep         keep the scratch directory (databases, queries, answers)
#   AUTHZ_SQLITE_SERVER=PATH tests that binary instead of building ./authz-sqlite-server
#
# 1. Every conformance scenario in ../shared/conformance (CONFORMANCE=DIR overrides): its
#    workspace is imported into a fresh database, both servers serve it, the scenario's
#    queries go to each through `authzctl check --socket`, and the answer lines must be
#    identical (explanation steps included), and match the scenario's expectations.
# 2. A generated workspace (`authzctl generate --users U --assets 40`): N random queries
#    (the three decisions and capabilities; half about related ids such as a project's
#    owner and grantees, the rest uniform; unknown, anonymous and inactive users; can_use
#    with and without a project) plus a systematic sweep (users of every kind x every
#    asset x no/known/unknown project), answers diffed the same way; the random run is
#    timed against each server. The same queries again on three variants of that
#    database: every list shuffled (row order != id order), and two hand-edited copies
#    that import validation would refuse (explorers on a plan without the role, explicit
#    roles of directory users, role sync off, another allowed domain).
# 3. For the scenarios and the generated workspace, wirediff.py asks the same queries as
#    single calls with random required_level/required_access/explain/
#    min_snapshot_version and again in Batch calls, plus malformed requests and framing
#    errors; responses must be byte-identical (error messages included).
#
# Needs python3. Builds ./authz-sqlite-server with make first.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
conformance=${CONFORMANCE:-$(cd "$repo/.." && pwd)/shared/conformance}
bin=${AUTHZ_BIN:-}
users=5000
queries=20000
seed=1
keep=0
while [ $# -gt 0 ]; do
  case "$1" in
    --bin) bin=$2; shift 2 ;;
    --users) users=$2; shift 2 ;;
    --queries) queries=$2; shift 2 ;;
    --seed) seed=$2; shift 2 ;;
    --keep) keep=1; shift ;;
    *) echo "usage: $0 [--bin DIR] [--users N] [--queries N] [--seed S] [--keep]" >&2; exit 2 ;;
  esac
done
if [ -z "$bin" ]; then
  if [ -x /tmp/authz-bin/authzd ] && [ -x /tmp/authz-bin/authzctl ]; then
    bin=/tmp/authz-bin
  else
    bin=$(cd "$repo" && swift build -c release --show-bin-path)
  fi
fi
authzd=$bin/authzd
authzctl=$bin/authzctl
for tool in "$authzd" "$authzctl"; do
  [ -x "$tool" ] || { echo "verify: $tool not found (build the release binaries or pass --bin)" >&2; exit 2; }
done
[ -d "$conformance" ] || { echo "verify: no conformance folder at $conformance" >&2; exit 2; }

if [ -n "${AUTHZ_SQLITE_SERVER:-}" ]; then
  server=$AUTHZ_SQLITE_SERVER # another build (e.g. a deliberately broken one, to test this script)
else
  make -s -C "$here" authz-sqlite-server
  server=$here/authz-sqlite-server
fi

work=$(mktemp -d "${TMPDIR:-/tmp}/authz-sqlite-verify.XXXXXX")
pids=()
cleanup() {
  for pid in "${pids[@]+"${pids[@]}"}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]+"${pids[@]}"}"; do wait "$pid" 2>/dev/null || true; done
  rm -f "$work"/*.sock
  if [ "$keep" = 1 ]; then echo "verify: scratch kept in $work"; else rm -rf "$work"; fi
}
trap cleanup EXIT

failures=0
fail() { echo "FAIL: $*"; failures=$((failures + 1)); }

wait_for_socket() {
  local path=$1 pid=$2
  for _ in $(seq 1 200); do
    if [ -S "$path" ] && python3 -c 'import socket,sys; s=socket.socket(socket.AF_UNIX); s.connect(sys.argv[1])' "$path" 2>/dev/null; then
      return 0
    fi
    kill -0 "$pid" 2>/dev/null || { echo "verify: server for $path exited" >&2; return 1; }
    sleep 0.05
  done
  echo "verify: $path did not come up" >&2
  return 1
}

import_into() {
  "$authzctl" import --db "$1" "$2" >/dev/null 2>"$work/import.log" || { cat "$work/import.log" >&2; exit 1; }
}

# start_servers DB NAME: authzd on $work/NAME-authzd.sock, baseline on $work/NAME-sqlite.sock.
start_servers() {
  local db=$1 name=$2
  "$authzd" --db "$db" --socket "$work/$name-authzd.sock" --require-database --log-level warning \
    2>>"$work/$name-authzd.log" &
  a_pid=$!
  pids+=("$a_pid")
  "$server" --db "$db" --socket "$work/$name-sqlite.sock" 2>>"$work/$name-sqlite.log" &
  b_pid=$!
  pids+=("$b_pid")
  wait_for_socket "$work/$name-authzd.sock" "$a_pid"
  wait_for_socket "$work/$name-sqlite.sock" "$b_pid"
}

stop_servers() {
  kill "$a_pid" "$b_pid"
  wait "$a_pid" || fail "authzd did not exit 0 on SIGTERM"
  wait "$b_pid" || fail "authz-sqlite-server did not exit 0 on SIGTERM"
  [ ! -e "$work/$1-sqlite.sock" ] || fail "authz-sqlite-server left its socket behind"
  local rest=() pid
  for pid in "${pids[@]}"; do
    if [ "$pid" != "$a_pid" ] && [ "$pid" != "$b_pid" ]; then rest+=("$pid"); fi
  done
  pids=("${rest[@]+"${rest[@]}"}")
}

# Compares answer lines to the scenario's `expect` objects.
check_expectations() {
  python3 - "$1" "$2" <<'PY'
import json, sys
scenario, answers = sys.argv[1], sys.argv[2]
checks = json.load(open(scenario))["checks"]
lines = [json.loads(l) for l in open(answers)]
assert len(lines) == len(checks), f"{len(lines)} answers for {len(checks)} checks"
bad = 0
for check, answer in zip(checks, lines):
    for key, want in check.get("expect", {}).items():
        if key == "has":
            ok = all(c in answer.get("capabilities", []) for c in want)
        elif key == "lacks":
            ok = not any(c in answer.get("capabilities", []) for c in want)
        else:
            ok = answer.get(key) == want
        if not ok:
            bad += 1
            print(f"  expectation {key}={want!r} not met by {json.dumps(answer)} for {json.dumps({k: v for k, v in check.items() if k != 'expect'})}")
sys.exit(1 if bad else 0)
PY
}

# ask_both SERVERS OUT QUERIES: the answers of the servers started as SERVERS to QUERIES,
# in $work/OUT.authzd.out and $work/OUT.sqlite.out, must be identical. With `timed`, both
# runs are timed (queries/s of `authzctl check --socket`).
ask_both() {
  local servers=$1 out=$2 queries_file=$3 timed=${4:-}
  local count
  count=$(wc -l <"$queries_file")
  for side in authzd sqlite; do
    local start end
    start=$(date +%s.%N)
    "$authzctl" check --socket "$work/$servers-$side.sock" <"$queries_file" >"$work/$out.$side.out"
    end=$(date +%s.%N)
    if [ -n "$timed" ]; then
      python3 -c 'import sys; s=float(sys.argv[2])-float(sys.argv[1]); n=int(sys.argv[3]); print(f"   {sys.argv[4]:<20} {s:6.2f} s, {n/s:8,.0f} queries/s (authzctl check --socket, {n} queries)")' \
        "$start" "$end" "$count" "$side"
    fi
  done
  if ! cmp -s "$work/$out.authzd.out" "$work/$out.sqlite.out"; then
    fail "$out: answers differ (< authzd, > authz-sqlite-server):"
    diff "$work/$out.authzd.out" "$work/$out.sqlite.out" | head -20 || true
    return 1
  fi
  if grep -q '"error"' "$work/$out.authzd.out"; then
    fail "$out: error lines in the answers"
    return 1
  fi
  return 0
}

# wirediff SERVERS QUERIES [ARGS...]: the protocol-level comparison (wirediff.py).
wirediff() {
  local servers=$1 queries_file=$2
  shift 2
  if python3 "$here/wirediff.py" --queries "$queries_file" --a "$work/$servers-authzd.sock" \
    --b "$work/$servers-sqlite.sock" --seed "$seed" "$@" >"$work/$servers.wirediff.txt"; then
    wirediff_summary=$(head -1 "$work/$servers.wirediff.txt")
    return 0
  fi
  fail "$servers: wirediff"
  cat "$work/$servers.wirediff.txt"
  wirediff_summary="DIFF"
  return 1
}

# ---------------------------------------------------------------------------------------
# 1. Conformance scenarios
# ---------------------------------------------------------------------------------------
echo "== conformance scenarios ($conformance)"
scenarios=0
for file in "$conformance"/*.json; do
  name=$(basename "$file" .json)
  has_workspace=$(python3 -c 'import json,sys; print(1 if "workspace" in json.load(open(sys.argv[1])) else 0)' "$file")
  [ "$has_workspace" = 1 ] || { echo "   $name: no workspace (skipped)"; continue; }
  scenarios=$((scenarios + 1))
  python3 - "$file" "$work/$name.workspace.json" "$work/$name.queries.jsonl" <<'PY'
import json, sys
scenario = json.load(open(sys.argv[1]))
json.dump(scenario["workspace"], open(sys.argv[2], "w"))
with open(sys.argv[3], "w") as out:
    for check in scenario["checks"]:
        out.write(json.dumps({k: v for k, v in check.items() if k != "expect"}) + "\n")
PY
  import_into "$work/$name.db" "$work/$name.workspace.json"
  start_servers "$work/$name.db" "$name"
  count=$(wc -l <"$work/$name.queries.jsonl")
  status=ok
  ask_both "$name" "$name" "$work/$name.queries.jsonl" || status=DIFF
  if ! check_expectations "$file" "$work/$name.sqlite.out"; then
    fail "$name: the baseline misses the scenario's expectations"
    status=DIFF
  fi
  if ! check_expectations "$file" "$work/$name.authzd.out" >/dev/null; then
    echo "   note: authzd itself misses expectations of $name"
  fi
  wirediff "$name" "$work/$name.queries.jsonl" --rounds 3 || status=DIFF
  echo "   $name: $count queries, $status; $wirediff_summary"
  stop_servers "$name"
done
[ "$scenarios" -gt 0 ] || fail "no conformance scenario found"

# ---------------------------------------------------------------------------------------
# 2. A generated workspace, its shuffled twin and hand-edited copies
# ---------------------------------------------------------------------------------------
echo "== generated workspace: $users users, 40 assets, seed $seed"
# 40 assets (the default would be 10) so that every kind of asset sharing occurs.
"$authzctl" generate --users "$users" --seed "$seed" --assets 40 >"$work/gen.json"
import_into "$work/gen.db" "$work/gen.json"

# gen.random.jsonl: the random queries. Half are about related ids (a project's owner,
# grantees and members of granted groups; the project's own assets) so that every rule is
# reached; the rest are uniform, with unknown ids, the anonymous viewer and inactive users
# mixed in. gen.edges.jsonl: a systematic sweep, for a sample of users of every role,
# origin and state (plus anonymous and unknown): can_use on every asset without a project,
# in a project and in an unknown project; effective_permission on a sample of projects.
python3 - "$work/gen.json" "$work/gen.random.jsonl" "$work/gen.edges.jsonl" "$queries" "$seed" <<'PY'
import json, random, sys
doc = json.load(open(sys.argv[1]))
count, rng = int(sys.argv[4]), random.Random(int(sys.argv[5]))
users = [u["id"] for u in doc["users"]]
inactive = [u["id"] for u in doc["users"] if not u.get("active", True)]
projects = doc["projects"]
assets = [a["id"] for a in doc["assets"]]
members = {g["id"]: g.get("members", []) for g in doc["groups"]}
UNKNOWN_USERS = ["u-999999", "nobody", "U-000001"]
UNKNOWN_PROJECTS = ["p-999999", "nope", "P-000001"]
UNKNOWN_ASSETS = ["a-9999", "nope"]

def user():
    r = rng.random()
    if r < 0.04: return ""                                   # the anonymous web viewer
    if r < 0.08: return rng.choice(UNKNOWN_USERS + ["u-" + str(rng.randint(0, 99999))])
    if r < 0.14 and inactive: return rng.choice(inactive)
    return rng.choice(users)

def related_user(p):
    candidates = []
    if p.get("owner"): candidates.append(p["owner"])
    for g in p.get("grants", []):
        if "user" in g: candidates.append(g["user"])
        elif members.get(g["group"]): candidates.append(rng.choice(members[g["group"]]))
    return rng.choice(candidates) if candidates and rng.random() < 0.9 else user()

def project():
    if rng.random() < 0.04: return {"id": rng.choice(UNKNOWN_PROJECTS)}
    return rng.choice(projects)

def asset(p=None):
    if rng.random() < 0.04: return rng.choice(UNKNOWN_ASSETS)
    if p is not None and p.get("assets") and rng.random() < 0.8: return rng.choice(p["assets"])
    return rng.choice(assets)

def line(q):
    return json.dumps(q, separators=(",", ":")) + "\n"

with open(sys.argv[2], "w") as out:
    for _ in range(count):
        r = rng.random()
        related = rng.random() < 0.5
        p = project()
        u = related_user(p) if related else user()
        if r < 0.45:
            q = {"op": "effective_permission", "user": u, "project": p["id"]}
        elif r < 0.85:
            q = {"op": "can_use", "user": u, "asset": asset(p if related else None)}
            if rng.random() < 0.5:
                q["project"] = p["id"] if related else project()["id"]
        elif r < 0.95:
            q = {"op": "seat_type", "user": u}
        else:
            q = {"op": "capabilities", "user": u}
        out.write(line(q))

# The sweep: up to 3 users per (origin, explicit role, active) kind.
kinds = {}
for u in doc["users"]:
    kinds.setdefault((u["origin"], u.get("role"), u.get("active", True)), []).append(u["id"])
sample = [""] + UNKNOWN_USERS[:1] + [i for ids in kinds.values() for i in ids[:3]]
with_assets = [p for p in projects if p.get("assets")][:20]
with open(sys.argv[3], "w") as out:
    for u in sample:
        out.write(line({"op": "seat_type", "user": u}))
        out.write(line({"op": "capabilities", "user": u}))
        for a in assets + UNKNOWN_ASSETS[:1]:
            out.write(line({"op": "can_use", "user": u, "asset": a}))
            out.write(line({"op": "can_use", "user": u, "asset": a, "project": rng.choice(with_assets)["id"]}))
            out.write(line({"op": "can_use", "user": u, "asset": a, "project": UNKNOWN_PROJECTS[0]}))
        for p in with_assets + rng.sample(projects, 20):
            out.write(line({"op": "effective_permission", "user": u, "project": p["id"]}))
PY
edges=$(wc -l <"$work/gen.edges.jsonl")

# answer_mix FILE: which reasons / seats the answers cover.
answer_mix() {
  python3 - "$1" <<'PY'
import collections, json, sys
kinds = collections.Counter()
for line in open(sys.argv[1]):
    a = json.loads(line)
    kinds[a.get("reason") or ("seat:" + a["seat"] if "seat" in a else "capabilities")] += 1
print("   answer mix: " + ", ".join(f"{k} {v}" for k, v in kinds.most_common()))
PY
}

start_servers "$work/gen.db" gen
status=ok
ask_both gen gen.random "$work/gen.random.jsonl" timed || status=DIFF
answer_mix "$work/gen.random.authzd.out"
ask_both gen gen.edges "$work/gen.edges.jsonl" || status=DIFF
cat "$work/gen.random.jsonl" "$work/gen.edges.jsonl" >"$work/gen.all.jsonl"
wirediff gen "$work/gen.all.jsonl" || status=DIFF
echo "   generated: $queries random + $edges sweep queries, $status; $wirediff_summary"
stop_servers gen

# variant NAME DB DESCRIPTION: the same queries (answers only) on another database.
variant() {
  local name=$1 db=$2 description=$3 status=ok
  start_servers "$db" "$name"
  ask_both "$name" "$name.random" "$work/gen.random.jsonl" || status=DIFF
  ask_both "$name" "$name.edges" "$work/gen.edges.jsonl" || status=DIFF
  echo "   $description: $status"
  stop_servers "$name"
}

# The same workspace with every list shuffled: row order (pk) no longer follows id order,
# which tells "first group in list order" (group grant ties) from "first asset by id".
python3 - "$work/gen.json" "$work/shuffled.json" "$seed" <<'PY'
import json, random, sys
doc = json.load(open(sys.argv[1]))
rng = random.Random(int(sys.argv[3]))
for key in ("users", "groups", "assets", "projects"):
    rng.shuffle(doc[key])
for g in doc["groups"]:
    rng.shuffle(g.get("members", []))
for a in doc["assets"]:
    if "groups" in a: rng.shuffle(a["groups"])
for p in doc["projects"]:
    rng.shuffle(p.get("grants", []))
    rng.shuffle(p.get("assets", []))
json.dump(doc, open(sys.argv[2], "w"))
PY
import_into "$work/shuffled.db" "$work/shuffled.json"
variant shuffled "$work/shuffled.db" "shuffled lists (pk order != id order)"

# Hand edits (as with the sqlite3 CLI) that import validation would refuse, but that the
# sidecar loads: explorers on a plan without the role (plan_downgrade), explicit roles on
# directory users while role sync is on (ignored), then role sync off (used).
edit() {
  cp "$work/gen.db" "$work/$1.db"
  python3 - "$work/$1.db" "$2" <<'PY'
import sqlite3, sys
db = sqlite3.connect(sys.argv[1])
db.executescript(sys.argv[2])
db.commit()
db.close()
PY
}
edit edited1 "
  UPDATE workspace SET plan = 'professional', default_domain_role = 'explorer';
  UPDATE users SET role = 'explorer' WHERE origin = 'manual' AND role = 'viewer' AND pk % 2 = 0;
  UPDATE users SET role = 'admin' WHERE origin = 'directory' AND pk % 5 = 0;
  UPDATE role_mappings SET role = 'explorer' WHERE pk = 2;"
variant edited1 "$work/edited1.db" "hand-edited: plan professional, explorer roles and mappings"
edit edited2 "
  UPDATE workspace SET plan = 'team', viewer_seats_paid = 1, directory_role_sync = 0,
    default_domain_role = 'guest';
  UPDATE users SET role = 'manager' WHERE origin = 'directory' AND pk % 5 = 0;
  DELETE FROM allowed_domains;
  INSERT INTO allowed_domains (domain) VALUES ('partner-7.io');"
variant edited2 "$work/edited2.db" "hand-edited: role sync off, viewer seats paid, other domain"

if [ "$failures" -gt 0 ]; then
  echo "verify: $failures failure(s)"
  exit 1
fi
echo "verify: OK ($scenarios conformance scenarios, a generated workspace and 3 variants; no difference)"
