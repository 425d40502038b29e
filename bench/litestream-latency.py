#!/usr/bin/env python3
"""Commit-to-visible latency across nodes with Litestream (issue 14).

One primary replicated by Litestream (deploy/litestream/primary-file.yml) to a file
replica, N followers (`litestream restore -f -follow-interval 100ms`) each with its own
authzd (file watch + 1 s poll, the defaults). Commits go to the primary through `authzctl
apply`, spaced by --gap seconds (randomised +-50%), so each one is measured on its own.

For each commit and each follower: the time from just before `authzctl apply` started
(an upper bound on the commit instant) to the moment that follower's authzd put the
commit's version (or a later one) in service, from authzd's JSON log ("reloaded the
workspace snapshot", millisecond timestamps; requests are answered from that snapshot
from then on). Reports p50, p99 and max over all (commit, follower) pairs, per follower,
and the Litestream settings used, as text and JSON; also the time to the start of the
load that put it in service (the version's visible time minus authzd's load-ms), i.e.
replication and detection without authzd's snapshot build.

    bench/litestream-latency.py --bin .build/release --litestream .venv-litestream/bin/litestream \
        --workspace demo --commits 60
    bench/litestream-latency.py ... --workspace large --commits 15 --gap 4

--monitor-interval / --sync-interval / --follow-interval override the documented settings
(e.g. Litestream's defaults, 1s each, for comparison).
"""

import argparse
import json
import os
import random
import re
import shutil
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "scripts"))
import litestream_cluster  # noqa: E402
from litestream_cluster import Cluster, random_operations  # noqa: E402

LARGE = ["--users", "100000", "--groups", "10000", "--projects", "50000", "--grants-per-project", "20", "--seed", "1"]


def percentile(values, p):
    values = sorted(values)
    index = min(len(values) - 1, max(0, int(round(p / 100 * len(values) + 0.5)) - 1))
    return values[index]


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bin", required=True)
    parser.add_argument("--litestream", required=True)
    parser.add_argument("--workspace", choices=["demo", "large"], default="demo")
    parser.add_argument("--large-document", help="a generated large document to reuse (else generated)")
    parser.add_argument("--followers", type=int, default=3)
    parser.add_argument("--commits", type=int, default=60)
    parser.add_argument("--gap", type=float, default=1.0)
    parser.add_argument("--monitor-interval", default=None)
    parser.add_argument("--sync-interval", default=None)
    parser.add_argument("--follow-interval", default=None)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--json", help="write the results here")
    parser.add_argument("--keep", action="store_true")
    args = parser.parse_args()

    rng = random.Random(args.seed)
    scratch = tempfile.mkdtemp(prefix="authz-litestream-bench-")
    config = litestream_cluster.PRIMARY_CONFIG
    settings = {"monitor-interval": "100ms", "sync-interval": "100ms", "follow-interval": litestream_cluster.FOLLOW_INTERVAL}
    if args.monitor_interval or args.sync_interval:
        text = open(config).read()
        if args.monitor_interval:
            text = re.sub(r"monitor-interval: \S+", "monitor-interval: " + args.monitor_interval, text)
            settings["monitor-interval"] = args.monitor_interval
        if args.sync_interval:
            text = re.sub(r"sync-interval: \S+", "sync-interval: " + args.sync_interval, text)
            settings["sync-interval"] = args.sync_interval
        config = os.path.join(scratch, "primary.yml")
        open(config, "w").write(text)
        litestream_cluster.PRIMARY_CONFIG = config
    if args.follow_interval:
        litestream_cluster.FOLLOW_INTERVAL = args.follow_interval
        settings["follow-interval"] = args.follow_interval

    cluster = Cluster(scratch, args.bin, args.litestream, followers=args.followers)
    try:
        if args.workspace == "large":
            document = args.large_document
            if not document:
                document = os.path.join(scratch, "large.json")
                with open(document, "w") as f:
                    f.write(cluster.run([cluster.authzctl, "generate", *LARGE]).stdout)
            v0 = cluster.init_primary(document)
            users = [f"u-{i:06d}" for i in rng.sample(range(1, 100001), 200)]
            projects = [f"p-{i:06d}" for i in rng.sample(range(1, 50001), 200)]

            def operations():
                return random_operations(rng, users=users, projects=projects, groups=[])
        else:
            v0 = cluster.init_primary()

            def operations():
                return random_operations(rng)
        db_bytes = os.path.getsize(cluster.primary)
        cluster.start_replicator()
        cluster.wait_for_replica(timeout=120)
        for i in range(cluster.n):
            cluster.start_follower(i)
            cluster.start_authzd(i)
        cluster.wait_served(v0, timeout=300)
        time.sleep(1)

        for _ in range(args.commits):
            cluster.commit(operations())
            time.sleep(args.gap * rng.uniform(0.5, 1.5))
        final = cluster.versions[-1]
        cluster.wait_served(final, timeout=120)
        time.sleep(0.5)

        per_node, detected = [], []
        for i in range(cluster.n):
            installed = sorted(cluster.install_times(i).items())
            latencies = []
            for version in cluster.versions[1:]:
                seen, load = min((t, l) for v, (t, l) in installed if v >= version)
                latencies.append(seen - cluster.commit_times[version])
                detected.append(seen - load - cluster.commit_times[version])
            per_node.append(latencies)
        every = [x for node in per_node for x in node]

        def ms(values, p):
            return round(percentile(values, p) * 1000)
        result = {
            "workspace": args.workspace, "database_bytes": db_bytes, "followers": cluster.n,
            "commits": len(cluster.versions) - 1, "gap_s": args.gap, "settings": settings,
            "p50_ms": ms(every, 50), "p99_ms": ms(every, 99), "max_ms": round(max(every) * 1000),
            "load_start_p50_ms": ms(detected, 50), "load_start_p99_ms": ms(detected, 99),
            "load_start_max_ms": round(max(detected) * 1000),
            "per_follower": [{"p50_ms": ms(n, 50), "p99_ms": ms(n, 99), "max_ms": round(max(n) * 1000)}
                             for n in per_node],
        }
        print(f"{args.workspace} workspace ({db_bytes / 1e6:.1f} MB database), {result['commits']} commits "
              f"~{args.gap}s apart, {cluster.n} followers; litestream {settings}")
        print(f"commit -> visible in a follower's authzd: p50 {result['p50_ms']} ms, p99 {result['p99_ms']} ms, "
              f"max {result['max_ms']} ms")
        print(f"commit -> that authzd starts loading it (replication + detection, without the load): "
              f"p50 {result['load_start_p50_ms']} ms, p99 {result['load_start_p99_ms']} ms, "
              f"max {result['load_start_max_ms']} ms")
        for i, node in enumerate(result["per_follower"]):
            print(f"  follower {i}: p50 {node['p50_ms']} ms, p99 {node['p99_ms']} ms, max {node['max_ms']} ms")
        if args.json:
            with open(args.json, "w") as f:
                json.dump(result, f, indent=2)
    finally:
        cluster.stop_all()
        if args.keep:
            print(f"kept {scratch}", file=sys.stderr)
        else:
            shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
