#!/usr/bin/env bash
# Diff import and apply on the large generated workspace (issue 13), release build:
#   - `authzctl import` of the large document with 100 grants changed (alternating between
#     the original and the changed document, so every run writes 100 rows), wall time;
#   - `authzctl import` of the same document again (nothing to write);
#   - `authzctl apply` of 100 operations, wall time;
#   and the snapshot version bump and change-log rows of each. bench/RESULTS.md quotes it.
#
#   bench/import-diff.sh [--runs 5] [--users 100000]
set -euo pipefail
cd "$(dirname "$0")/.."

runs=5 users=100000
while [ $# -gt 0 ]; do
    case "$1" in
        --runs) runs=$2; shift 2 ;;
        --users) users=$2; shift 2 ;;
        *) echo "unknown option $1" >&2; exit 2 ;;
    esac
done

out=bench/out/import-diff
mkdir -p "$out"
echo "== building the release authzctl" >&2
swift build -c release --product authzctl >&2
ctl=$(swift build -c release --show-bin-path)/authzctl
db=$out/large.db

echo "== machine: $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg) at the start" >&2
if [ ! -s "$out/large-$users.json" ]; then
    echo "== generating the document (--users $users --seed 1)" >&2
    "$ctl" generate --users "$users" --seed 1 > "$out/large-$users.json"
fi
doc=$out/large-$users.json

# The changed document (100 grants with another level) and 100 operations, from the
# document's own ids.
python3 - "$doc" "$out/changed.json" "$out/ops.jsonl" <<'EOF'
import json, sys
doc = json.load(open(sys.argv[1]))
levels = ["can_view_app", "can_view", "can_explore", "can_edit", "full_access"]
changed = 0
for project in doc["projects"][::max(1, len(doc["projects"]) // 200)]:
    if changed == 100:
        break
    if project["grants"]:
        grant = project["grants"][0]
        grant["level"] = levels[(levels.index(grant["level"]) + 1) % len(levels)] if grant["level"] in levels else "can_view"
        changed += 1
assert changed == 100, changed
json.dump(doc, open(sys.argv[2], "w"))
users = [u["id"] for u in doc["users"]]
groups = [g["id"] for g in doc["groups"] if g["source"] == "workspace"]
projects = [p["id"] for p in doc["projects"]]
# Two batches that undo each other, so that every run changes rows.
with open(sys.argv[3] + ".a", "w") as a, open(sys.argv[3] + ".b", "w") as b:
    for i in range(100):
        kind = i % 5
        if kind == 0:
            ops = [{"op": "grant", "project": projects[i * 7], "user": users[i * 13], "level": level} for level in ("can_edit", "can_view")]
        elif kind == 1:
            ops = [{"op": name, "group": groups[i % len(groups)], "user": users[i * 17 + 5]} for name in ("add_member", "remove_member")]
        elif kind == 2:
            ops = [{"op": "set_workspace_share", "project": projects[i * 11 + 3], "level": level} for level in ("full_access", "none")]
        elif kind == 3:
            ops = [{"op": name, "user": users[i * 19 + 7]} for name in ("deactivate_user", "reactivate_user")]
        else:
            ops = [{"op": "grant", "project": projects[i * 5 + 1], "group": groups[(i * 3) % len(groups)], "level": "can_edit"},
                   {"op": "revoke", "project": projects[i * 5 + 1], "group": groups[(i * 3) % len(groups)]}]
        a.write(json.dumps(ops[0]) + "\n")
        b.write(json.dumps(ops[1]) + "\n")
EOF

# Wall seconds on stdout; "wall user sys" of every run appended to $out/cpu.log.
seconds() {
    /usr/bin/time -f "%e %U %S" -o "$out/t" "$@" > "$out/stdout" 2> "$out/stderr"
    echo "$(cat "$out/t") $*" >> "$out/cpu.log"
    cut -d' ' -f1 "$out/t"
}
version() { sqlite3 "$db" "SELECT version FROM meta"; }
median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

: > "$out/cpu.log"
rm -f "$db" "$db-wal" "$db-shm"
echo "== first import (bulk replace): $(seconds "$ctl" import --db "$db" "$doc") s, version $(version)" >&2
"$ctl" log-retention --db "$db" > /dev/null

echo "== import with 100 changed grants, $runs runs (alternating documents)" >&2
: > "$out/diff.times"
for i in $(seq "$runs"); do
    [ $((i % 2)) -eq 1 ] && file=$out/changed.json || file=$doc
    before=$(version)
    t=$(seconds "$ctl" import --timing --db "$db" "$file")
    echo "$t" >> "$out/diff.times"
    echo "   run $i: $t s (cpu user+sys $(awk '{print $2 + $3}' "$out/t") s), version +$(( $(version) - before )), $(tail -1 "$out/stderr")" >&2
    echo "      $(grep -E '^(decode|read|wait|plan|write|commit)' "$out/stderr" | sed -E 's/([0-9]+\.[0-9]{2})[0-9]*/\1/' | paste -sd ';' -)" >&2
done
echo "import 100 changed grants: median $(median < "$out/diff.times") s (min $(sort -n "$out/diff.times" | head -1), max $(sort -n "$out/diff.times" | tail -1))"

: > "$out/same.times"
for i in $(seq 3); do
    before=$(version)
    seconds "$ctl" import --db "$db" "$file" >> "$out/same.times"
    [ "$(version)" = "$before" ] || { echo "error: importing the same document changed the version" >&2; exit 1; }
done
echo "import of the same document again (no change): median $(median < "$out/same.times") s"

echo "== apply 100 operations, $runs runs" >&2
: > "$out/apply.times"
for i in $(seq "$runs"); do
    before=$(version)
    [ $((i % 2)) -eq 1 ] && file=$out/ops.jsonl.a || file=$out/ops.jsonl.b
    t=$(seconds "$ctl" apply --timing --db "$db" "$file")
    echo "$t" >> "$out/apply.times"
    echo "   run $i: $t s, version +$(( $(version) - before )); $(head -1 "$out/stderr")" >&2
done
echo "apply 100 operations: median $(median < "$out/apply.times") s (min $(sort -n "$out/apply.times" | head -1), max $(sort -n "$out/apply.times" | tail -1))"
echo "change log: $(sqlite3 "$db" "SELECT count(*) || ' rows, floor ' || (SELECT log_floor FROM meta) || ', version ' || (SELECT version FROM meta) FROM changes")"
echo "load at the end: $(cut -d' ' -f1-3 /proc/loadavg)"
