#!/usr/bin/env python3
"""What the schema cannot say about deploy/kubernetes (run by scripts/validate-manifests.sh).

usage: manifest-policy.py KUSTOMIZATION_DIR RENDERED.yaml

- the kustomization lists only files that exist, and every manifest beside it;
- in the rendered pod template: authzd is a native sidecar (an init container with
  restartPolicy Always) with startup, readiness and liveness probes; the pod runs non-root
  with an fsGroup and the RuntimeDefault seccomp profile; every container drops all
  capabilities, forbids privilege escalation, has a read-only root filesystem and resource
  requests; authzd's socket group (authzd-config) is the fsGroup, its socket is on a volume
  the app container mounts too, and its database directory is mounted writable.
"""
import os
import sys

import yaml


def fail(problems):
    for problem in problems:
        print(f"error: {problem}", file=sys.stderr)
    sys.exit(1)


def main():
    directory, rendered = sys.argv[1], sys.argv[2]
    problems = []

    with open(os.path.join(directory, "kustomization.yaml")) as f:
        kustomization = yaml.safe_load(f)
    listed = kustomization.get("resources", [])
    for name in listed:
        if not os.path.isfile(os.path.join(directory, name)):
            problems.append(f"kustomization.yaml lists {name}, which does not exist")
    for name in sorted(os.listdir(directory)):
        if name.endswith((".yaml", ".yml")) and name != "kustomization.yaml" and name not in listed:
            problems.append(f"{name} is not listed in kustomization.yaml's resources")

    with open(rendered) as f:
        documents = [d for d in yaml.safe_load_all(f) if d]
    by_kind = {}
    for document in documents:
        by_kind.setdefault(document["kind"], []).append(document)
    config = {c["metadata"]["name"]: c.get("data", {}) for c in by_kind.get("ConfigMap", [])}
    deployments = by_kind.get("Deployment", [])
    if len(deployments) != 1:
        fail(problems + [f"expected one Deployment, found {len(deployments)}"])
    pod = deployments[0]["spec"]["template"]["spec"]
    name = deployments[0]["metadata"]["name"]

    pod_context = pod.get("securityContext", {})
    if pod_context.get("runAsNonRoot") is not True:
        problems.append(f"{name}: the pod must set runAsNonRoot: true")
    if not isinstance(pod_context.get("fsGroup"), int):
        problems.append(f"{name}: the pod must set an fsGroup (the socket's group)")
    if pod_context.get("seccompProfile", {}).get("type") != "RuntimeDefault":
        problems.append(f"{name}: the pod must use the RuntimeDefault seccomp profile")
    if pod_context.get("runAsUser", 1) == 0:
        problems.append(f"{name}: the pod must not run as uid 0")

    containers = pod.get("initContainers", []) + pod.get("containers", [])
    for container in containers:
        where = f"{name}: container {container['name']}"
        context = container.get("securityContext", {})
        if context.get("allowPrivilegeEscalation") is not False:
            problems.append(f"{where}: allowPrivilegeEscalation must be false")
        if context.get("readOnlyRootFilesystem") is not True:
            problems.append(f"{where}: readOnlyRootFilesystem must be true")
        if context.get("capabilities", {}).get("drop") != ["ALL"]:
            problems.append(f"{where}: capabilities must drop ALL")
        if context.get("capabilities", {}).get("add"):
            problems.append(f"{where}: must add no capabilities")
        if context.get("privileged"):
            problems.append(f"{where}: must not be privileged")
        if context.get("runAsUser") == 0 or context.get("runAsNonRoot") is False:
            problems.append(f"{where}: must not run as root")
        if not container.get("resources", {}).get("requests"):
            problems.append(f"{where}: needs resource requests")

    sidecars = [c for c in pod.get("initContainers", []) if c["name"] == "authzd"]
    if len(sidecars) != 1:
        fail(problems + [f"{name}: expected authzd among the init containers (a native sidecar)"])
    authzd = sidecars[0]
    if authzd.get("restartPolicy") != "Always":
        problems.append(f"{name}: authzd must be a native sidecar (restartPolicy: Always)")
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        if probe not in authzd:
            problems.append(f"{name}: authzd needs a {probe}")
    for probe in ("startupProbe", "readinessProbe"):
        command = authzd.get(probe, {}).get("exec", {}).get("command", [])
        if "--ready" not in command:
            problems.append(f"{name}: authzd's {probe} must run `authzctl status --ready`")

    environment = {}
    for source in authzd.get("envFrom", []):
        environment.update(config.get(source.get("configMapRef", {}).get("name"), {}))
    for variable in authzd.get("env", []):
        environment[variable["name"]] = variable.get("value")
    socket, database = environment.get("AUTHZD_SOCKET"), environment.get("AUTHZD_DB")
    if not socket or not database:
        problems.append(f"{name}: authzd's environment must set AUTHZD_SOCKET and AUTHZD_DB")
    elif str(environment.get("AUTHZD_SOCKET_GROUP")) != str(pod_context.get("fsGroup")):
        problems.append(f"{name}: AUTHZD_SOCKET_GROUP must be the pod's fsGroup")
    else:
        def mount_of(container, path):
            matches = [m for m in container.get("volumeMounts", [])
                       if os.path.dirname(path) == m["mountPath"].rstrip("/")]
            return matches[0] if matches else None

        socket_mount = mount_of(authzd, socket)
        if socket_mount is None:
            problems.append(f"{name}: authzd does not mount the socket's directory {os.path.dirname(socket)}")
        else:
            for container in pod.get("containers", []):
                if not any(m["name"] == socket_mount["name"] for m in container.get("volumeMounts", [])):
                    problems.append(f"{name}: container {container['name']} does not mount the socket volume")
        database_mount = mount_of(authzd, database)
        if database_mount is None:
            problems.append(f"{name}: authzd does not mount the database's directory {os.path.dirname(database)}")
        elif database_mount.get("readOnly"):
            problems.append(f"{name}: the database's directory must be writable (SQLite WAL -shm/-wal)")

    if problems:
        fail(problems)
    print(f"policy: {len(containers)} containers of {name} pass; kustomization lists {len(listed)} existing files")


if __name__ == "__main__":
    main()
