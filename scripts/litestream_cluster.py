#!/usr/bin/env python3
"""One primary, a Litestream file replica and N follower nodes, each with its own authzd,
all local, in a scratch directory. Used by scripts/test-litestream.sh (the convergence
test) and bench/litestream-latency.sh (commit-to-visible latency).

The primary runs `litestream replicate -config deploy/litestream/primary-file.yml`; each
follower deploy/litestream/follow.sh (`litestream restore -f -follow-interval 100ms -o
node<i>/workspace.db file://<replica>`) and `authzd --db node<i>/workspace.db` (the file watch and a 1 s poll,
the defaults). Commits on the primary go through `authzctl apply`.
"""

import calendar
import json
import os
import signal
import sqlite3
import subprocess
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PRIMARY_CONFIG = os.path.join(REPO, "deploy", "litestream", "primary-file.yml")
FOLLOW_SCRIPT = os.path.join(REPO, "deploy", "litestream", "follow.sh")
FOLLOW_INTERVAL = "100ms"

# The demo workspace's ids (Sources/AuthzWorkloads/DemoWorkspace.swift).
DEMO_USERS = ["ada", "grace", "linus", "barbara", "ken", "margaret", "dennis", "frances", "alan",
              "katherine", "john", "radia", "donald", "hedy", "claude", "sophie", "annie", "guido",
              "carla-contractor", "pat-partner", "ivan", "joan-guest"]
DEMO_PROJECTS = ["revenue-dashboard", "quarterly-close", "payroll-audit", "growth-experiments",
                 "candidate-take-home", "public-covid-tracker", "company-okrs", "infra-costs", "scratchpad"]
DEMO_GROUPS = ["g-data-team", "g-growth", "g-leadership"]
LEVELS = ["can_view_app", "can_view", "can_explore", "can_edit", "full_access"]


class Failure(Exception):
    pass


def random_operations(rng, users=DEMO_USERS, projects=DEMO_PROJECTS, groups=DEMO_GROUPS):
    """1 to 3 operations that are valid on any state the others leave (no group
    membership changes when `groups` is empty)."""
    ops = []
    for _ in range(rng.randint(1, 3)):
        kind = rng.choice(["grant", "grant", "revoke", "member", "share"] if groups else ["grant", "grant", "revoke", "share"])
        project = rng.choice(projects)
        if kind == "grant":
            ops.append({"op": "grant", "project": project, "user": rng.choice(users), "level": rng.choice(LEVELS)})
        elif kind == "revoke":
            ops.append({"op": "revoke", "project": project, "user": rng.choice(users)})
        elif kind == "member":
            op = rng.choice(["add_member", "remove_member"])
            ops.append({"op": op, "group": rng.choice(groups), "user": rng.choice(users)})
        else:
            ops.append({"op": "set_workspace_share", "project": project,
                        "level": rng.choice([None, "can_view", "can_edit", "can_view_app"])})
    return ops


def demo_queries():
    """A modest fixed query set: permissions of a spread of users on a spread of projects,
    seats, and two listings."""
    users = ["ada", "linus", "john", "claude", "annie", "carla-contractor", "joan-guest", ""]
    projects = ["revenue-dashboard", "payroll-audit", "growth-experiments", "company-okrs", "scratchpad"]
    lines = [{"op": "effective_permission", "user": u, "project": p} for u in users for p in projects]
    lines += [{"op": "seat_type", "user": u} for u in ["ada", "claude", "joan-guest"]]
    lines += [{"op": "list_projects", "user": u} for u in ["john", "annie"]]
    lines += [{"op": "can_use", "user": "john", "asset": "dc-warehouse", "project": "infra-costs"}]
    return "".join(json.dumps(q) + "\n" for q in lines)


class Cluster:
    def __init__(self, scratch, bin_dir, litestream, followers=3, log=print):
        self.scratch = scratch
        self.authzctl = os.path.join(bin_dir, "authzctl")
        self.authzd = os.path.join(bin_dir, "authzd")
        self.litestream = litestream
        self.n = followers
        self.log = log
        self.primary = os.path.join(scratch, "primary", "workspace.db")
        self.replica = os.path.join(scratch, "replica")
        self.copies = os.path.join(scratch, "copies")
        for d in ["primary", "copies"] + [f"node{i}" for i in range(followers)]:
            os.makedirs(os.path.join(scratch, d), exist_ok=True)
        self.replicator = None
        self.followers = [None] * followers
        self.daemons = [None] * followers
        self.versions = []          # every version the primary had, in order
        self.commit_times = {}      # version -> wall-clock time just before its commit began

    # -- paths
    def node_db(self, i):
        return os.path.join(self.scratch, f"node{i}", "workspace.db")

    def node_socket(self, i):
        return os.path.join(self.scratch, f"node{i}", "authz.sock")

    def copy_path(self, version):
        return os.path.join(self.copies, f"{version}.db")

    # -- the primary
    def run(self, args, stdin=None, check=True):
        result = subprocess.run(args, input=stdin, capture_output=True, text=True)
        if check and result.returncode != 0:
            raise Failure(f"{' '.join(args)} exited {result.returncode}: {result.stderr.strip()}")
        return result

    def save_copy(self, version):
        """A consistent copy of the primary at `version` (SQLite's online backup)."""
        source = sqlite3.connect(self.primary)
        try:
            found = source.execute("SELECT version FROM meta WHERE id = 1").fetchone()[0]
            if found != version:
                raise Failure(f"the primary is at {found}, expected {version}")
            target = sqlite3.connect(self.copy_path(version))
            source.backup(target)
            target.close()
        finally:
            source.close()

    def init_primary(self, document=None):
        if document:
            out = self.run([self.authzctl, "import", "--db", self.primary, document])
        else:
            out = self.run([self.authzctl, "demo", "--db", self.primary])
        version = int(out.stdout.split()[-1])
        self.versions.append(version)
        self.commit_times[version] = time.time()
        self.save_copy(version)
        return version

    def commit(self, operations):
        lines = "".join(json.dumps(op) + "\n" for op in operations)
        started = time.time()
        out = self.run([self.authzctl, "apply", "--db", self.primary], stdin=lines)
        version = int(out.stdout.split()[-1])
        if version != self.versions[-1]:
            self.versions.append(version)
            self.commit_times[version] = started
            self.save_copy(version)
        return version

    # -- processes
    def spawn(self, name, args, env=None):
        log = open(os.path.join(self.scratch, name + ".log"), "a")
        log.write(f"--- {time.strftime('%H:%M:%S')} {' '.join(args)}\n")
        log.flush()
        return subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)

    def start_replicator(self):
        env = dict(os.environ, AUTHZ_DB=self.primary, AUTHZ_REPLICA=self.replica)
        self.replicator = self.spawn("replicator", [self.litestream, "replicate", "-config", PRIMARY_CONFIG], env=env)

    def wait_for_replica(self, timeout=30):
        deadline = time.time() + timeout
        snapshots = os.path.join(self.replica, "ltx", "9")
        while time.time() < deadline:
            if os.path.isdir(snapshots) and any(n.endswith(".ltx") for n in os.listdir(snapshots)):
                return
            if self.replicator.poll() is not None:
                raise Failure("litestream replicate exited; see replicator.log")
            time.sleep(0.1)
        raise Failure("the replica has no snapshot after %ds" % timeout)

    def start_follower(self, i):
        """deploy/litestream/follow.sh: `litestream restore -f -follow-interval
        FOLLOW_INTERVAL -o node<i>/workspace.db file://<replica>`."""
        env = dict(os.environ, AUTHZ_DB=self.node_db(i), AUTHZ_REPLICA_URL="file://" + self.replica,
                   AUTHZ_FOLLOW_INTERVAL=FOLLOW_INTERVAL,
                   PATH=os.path.dirname(os.path.abspath(self.litestream)) + os.pathsep + os.environ["PATH"])
        self.followers[i] = self.spawn(f"follower{i}", ["sh", FOLLOW_SCRIPT], env=env)

    def start_authzd(self, i, extra=()):
        self.daemons[i] = self.spawn(f"authzd{i}", [
            self.authzd, "--db", self.node_db(i), "--socket", self.node_socket(i),
            "--log-format", "json", "--log-level", "info", *extra])

    def stop(self, process, sig=signal.SIGTERM, timeout=15):
        if process is None or process.poll() is not None:
            return
        process.send_signal(sig)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    def stop_all(self):
        for p in self.daemons + self.followers + [self.replicator]:
            self.stop(p)

    # -- the followers' sidecars
    def status(self, i):
        result = self.run([self.authzctl, "status", "--socket", self.node_socket(i)], check=False)
        if result.returncode != 0:
            return None
        return json.loads(result.stdout)

    def served_version(self, i):
        status = self.status(i)
        return status["snapshot_version"] if status else 0

    def wait_served(self, version, nodes=None, timeout=30):
        nodes = range(self.n) if nodes is None else nodes
        deadline = time.time() + timeout
        while True:
            served = {i: self.served_version(i) for i in nodes}
            if all(v == version for v in served.values()):
                return
            if time.time() > deadline:
                raise Failure(f"after {timeout}s the followers serve {served}, the primary is at {version}")
            time.sleep(0.1)

    def install_times(self, i):
        """When node i's authzd put each snapshot version in service (wall clock, from its
        JSON log, first time only): {version: (installed_at, load_seconds)}."""
        times = {}
        path = os.path.join(self.scratch, f"authzd{i}.log")
        with open(path) as f:
            for line in f:
                if not line.startswith("{"):
                    continue
                event = json.loads(line)
                if "snapshot-version" not in event or "load-ms" not in event:
                    continue
                version = int(event["snapshot-version"])
                stamp = calendar.timegm(time.strptime(event["time"][:19], "%Y-%m-%dT%H:%M:%S"))
                stamp += int(event["time"][20:23]) / 1000
                times.setdefault(version, (stamp, int(event["load-ms"]) / 1000))
        return times
