#!/usr/bin/env python3
"""The many-nodes convergence test (issue 14): one primary replicated by Litestream to a
file replica, three followers (`litestream restore -f`) each with its own authzd.

Random commits go to the primary through `authzctl apply`; after each one a copy of the
primary at its version is kept. While commits flow, a checker asks every follower's
authzd a fixed query set (`authzctl check --socket`) over and over: each answer names the
snapshot version it came from, and must be byte-identical to the answer `authzctl check
--db` gives from the primary's copy at that version, and no answer may name an older
version than an answer of an earlier run on the same node (within one run the queries
are sent concurrently, so their order on the connection is not their order in the
input). Mid-run a follower is stopped and restarted (SIGTERM), the replicator is killed
(SIGKILL) and restarted while commits continue, a follower is killed (SIGKILL) while the
primary is idle, and a follower is restarted from nothing (its database file deleted).
At the end every follower's authzd must serve the primary's last version.

    scripts/test-litestream.py --bin .build/debug --litestream .venv-litestream/bin/litestream
"""

import argparse
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from litestream_cluster import Cluster, Failure, demo_queries, random_operations  # noqa: E402


class Checker(threading.Thread):
    """Asks every node the query set in a loop and compares each answer with the answer
    from the primary's copy at the version the answer names."""

    def __init__(self, cluster, queries):
        super().__init__(daemon=True)
        self.cluster = cluster
        self.queries = queries
        self.expected = {}
        self.stop_event = threading.Event()
        self.rounds = 0
        self.answers = 0
        self.wrong = []
        self.backwards = []
        self.versions_seen = [set() for _ in range(cluster.n)]
        self.last_version = [0] * cluster.n

    def expected_lines(self, version):
        if version not in self.expected:
            path = self.cluster.copy_path(version)
            if not os.path.exists(path):
                return None
            out = self.cluster.run([self.cluster.authzctl, "check", "--db", path], stdin=self.queries)
            self.expected[version] = out.stdout.splitlines()
        return self.expected[version]

    def check_node(self, i):
        c = self.cluster
        result = subprocess.run([c.authzctl, "check", "--socket", c.node_socket(i)], input=self.queries,
                                capture_output=True, text=True)
        if result.returncode != 0:
            self.wrong.append(f"node {i}: check --socket exited {result.returncode}: {result.stderr.strip()}")
            return
        lines = result.stdout.splitlines()
        before = self.last_version[i]
        if len(lines) != self.queries.count("\n"):
            self.wrong.append(f"node {i}: {len(lines)} answers to {self.queries.count(chr(10))} queries")
            return
        for index, line in enumerate(lines):
            marker = '"snapshot_version":'
            at = line.rfind(marker)
            if at < 0:
                self.wrong.append(f"node {i}: answer {index} names no version: {line}")
                continue
            digits = line[at + len(marker):].split(",")[0].split("}")[0]
            version = int(digits)
            expected = self.expected_lines(version)
            if expected is None:
                self.wrong.append(f"node {i}: version {version} was never a version of the primary: {line}")
                continue
            if line != expected[index]:
                self.wrong.append(f"node {i}: at version {version}, query {index}:\n  served   {line}\n  primary  {expected[index]}")
            if version < before:
                # An earlier run (an earlier connection, closed) was answered at `before`:
                # the node's authzd went back to an older snapshot.
                self.backwards.append(f"node {i}: version {version} after {before} "
                                      f"(query {index}: {line})")
            self.last_version[i] = max(self.last_version[i], version)
            self.versions_seen[i].add(version)
            self.answers += 1

    def run(self):
        while not self.stop_event.is_set():
            for i in range(self.cluster.n):
                self.check_node(i)
            self.rounds += 1

    def stop(self):
        self.stop_event.set()
        self.join()


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bin", required=True, help="directory with authzd and authzctl")
    parser.add_argument("--litestream", required=True)
    parser.add_argument("--seed", type=int, default=int(time.time()))
    parser.add_argument("--keep", action="store_true", help="keep the scratch directory")
    args = parser.parse_args()

    rng = random.Random(args.seed)
    scratch = tempfile.mkdtemp(prefix="authz-litestream-")
    started = time.time()

    def say(text):
        print(f"[{time.time() - started:5.1f}s] {text}", flush=True)

    say(f"seed {args.seed}, scratch {scratch}")
    cluster = Cluster(scratch, args.bin, args.litestream, followers=3)
    checker = None
    ok = False
    try:
        v0 = cluster.init_primary()
        cluster.start_replicator()
        cluster.wait_for_replica()
        for i in range(cluster.n):
            cluster.start_follower(i)
            cluster.start_authzd(i)
        cluster.wait_served(v0)
        say(f"primary at {v0}; 3 followers restored it and their authzd serve it")

        checker = Checker(cluster, demo_queries())
        checker.start()

        def commits(count, gap=(0.05, 0.5)):
            for _ in range(count):
                cluster.commit(random_operations(rng))
                time.sleep(rng.uniform(*gap))

        # Commits flow; follower 0 is stopped (SIGTERM) and restarted in the middle.
        commits(4)
        cluster.stop(cluster.followers[0])
        say(f"follower 0 stopped (SIGTERM) at primary version {cluster.versions[-1]}")
        commits(3)
        cluster.start_follower(0)
        say("follower 0 restarted (restores anew: deploy/litestream/follow.sh)")
        commits(5)

        # The replicator is killed while commits continue, then restarted.
        cluster.stop(cluster.replicator, signal.SIGKILL)
        say(f"replicator killed (SIGKILL) at primary version {cluster.versions[-1]}")
        commits(3)
        cluster.start_replicator()
        say("replicator restarted")
        commits(3)

        # Follower 1 is killed while the primary is idle (see README.md, "Many nodes":
        # a follower killed in the middle of applying a transaction leaves a partly
        # written file until it is restarted), commits arrive, it comes back.
        cluster.wait_served(cluster.versions[-1])
        cluster.stop(cluster.followers[1], signal.SIGKILL)
        say(f"follower 1 killed (SIGKILL) at primary version {cluster.versions[-1]}")
        commits(2)
        cluster.start_follower(1)
        say("follower 1 restarted")

        # Follower 2 starts over from nothing: its database file is deleted.
        cluster.stop(cluster.followers[2])
        for suffix in ("", "-txid"):
            os.remove(cluster.node_db(2) + suffix)
        say(f"follower 2 stopped and its database deleted at primary version {cluster.versions[-1]}")
        commits(2)
        cluster.start_follower(2)
        say("follower 2 restoring from nothing")
        commits(6)
        cluster.stop(cluster.followers[0])
        cluster.start_follower(0)
        commits(4)

        final = cluster.versions[-1]
        cluster.wait_served(final, timeout=30)
        say(f"every follower's authzd serves the primary's version {final}")
        checker.stop()
        for i in range(cluster.n):  # once more, at the final version
            checker.check_node(i)

        commits_made = len(cluster.versions) - 1
        seen = sorted(set().union(*checker.versions_seen))
        say(f"{commits_made} commits; {checker.rounds} check rounds, {checker.answers} answers compared, "
            f"{len(seen)} distinct versions verified; per node: {[len(s) for s in checker.versions_seen]}")
        if checker.backwards:
            raise Failure(f"{len(checker.backwards)} answers named an older version than an earlier run's "
                          f"answer on the same node, e.g. {checker.backwards[0]}")
        if checker.wrong:
            for line in checker.wrong[:20]:
                print("WRONG: " + line, file=sys.stderr)
            raise Failure(f"{len(checker.wrong)} wrong answers or errors")
        if any(final not in s for s in checker.versions_seen):
            raise Failure("a node's final version was not verified")
        if len(seen) < 5:
            raise Failure(f"only {len(seen)} versions were verified: the check did not see the commits go by")
        ok = True
    except Failure as error:
        print(f"error: {error}", file=sys.stderr)
        args.keep = True
    finally:
        if checker and checker.is_alive():
            checker.stop()
        cluster.stop_all()
        if args.keep:
            print(f"logs kept in {scratch}", file=sys.stderr)
        else:
            shutil.rmtree(scratch, ignore_errors=True)
    say("litestream convergence: " + ("1 passed, 0 failed" if ok else "0 passed, 1 failed"))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
