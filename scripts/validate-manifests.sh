#!/usr/bin/env bash
# Validates deploy/kubernetes and deploy/litestream/kubernetes (the follower node's pod):
# renders each kustomization (`kubectl kustomize` when kubectl is installed, else the
# listed files as they are), validates every resource against the
# Kubernetes OpenAPI schemas of 1.29 (the first release with native sidecars on by default)
# and of the newest release the pinned kubernetes-validate knows, in strict mode (an unknown
# field fails), then checks what the schema cannot (scripts/manifest-policy.py: the native
# sidecar, probes, securityContext, the shared socket, the kustomization's file list).
# A deliberately broken copy must fail both checks, so a validator that stopped checking
# is noticed. kubernetes-validate comes from PyPI into .venv-tools/ (ignored by git).
set -euo pipefail
cd "$(dirname "$0")/.."

validator_version=1.37.0
kubernetes_versions=(1.29.0 1.37.0)
manifests=deploy/kubernetes

venv=.venv-tools
if ! "$venv/bin/kubernetes-validate" --version 2>/dev/null | grep -qF "$validator_version"; then
    echo "installing kubernetes-validate==$validator_version into $venv" >&2
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check "kubernetes-validate==$validator_version"
fi
python="$venv/bin/python"

scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
validate() {
    local file=$1 version
    for version in "${kubernetes_versions[@]}"; do
        "$venv/bin/kubernetes-validate" --strict --quiet --kubernetes-version "$version" "$file" || return 1
    done
}

# Renders kustomization directory $1 into $2.
render() {
    local directory=$1 output=$2
    if command -v kubectl >/dev/null 2>&1; then
        kubectl kustomize "$directory" >"$output"
        echo "rendered $directory with kubectl kustomize ($(kubectl version --client 2>/dev/null | grep -i kustomize || echo kustomize))"
    else
        echo "kubectl is not installed: validating $directory's resources as they are (images not substituted)"
        "$python" - "$directory" >"$output" <<'PY'
import os, sys, yaml
directory = sys.argv[1]
with open(os.path.join(directory, "kustomization.yaml")) as f:
    resources = yaml.safe_load(f).get("resources", [])
for name in resources:
    with open(os.path.join(directory, name)) as f:
        sys.stdout.write("---\n" + f.read())
PY
    fi
}

# deploy/kubernetes, and the follower node's pod of deploy/litestream/kubernetes (issue
# 14): every manifest file on its own (an error names the file), then the rendered whole,
# then the policy.
rendered="$scratch/rendered.yaml"
for directory in "$manifests" deploy/litestream/kubernetes; do
    output="$scratch/$(echo "$directory" | tr / -).yaml"
    render "$directory" "$output"
    for file in "$directory"/*.yaml; do
        [ "$(basename "$file")" = kustomization.yaml ] && continue
        validate "$file"
    done
    validate "$output"
    "$python" scripts/manifest-policy.py "$directory" "$output"
    echo "schemas: $(grep -c '^kind:' "$output") resources of $directory valid against Kubernetes ${kubernetes_versions[*]} (strict)"
done
cp "$scratch/$(echo "$manifests" | tr / -).yaml" "$rendered"

# The checks must be able to fail: an unknown field, and authzd as a plain init container.
"$python" - "$rendered" "$scratch/unknown-field.yaml" "$scratch/not-a-sidecar.yaml" <<'PY'
import sys, yaml
with open(sys.argv[1]) as f:
    documents = [d for d in yaml.safe_load_all(f) if d]
def pod(documents):
    return next(d for d in documents if d["kind"] == "Deployment")["spec"]["template"]["spec"]
pod(documents)["initContainers"][-1]["securityContext"]["readOnlyRootFilesytem"] = True
with open(sys.argv[2], "w") as f:
    yaml.safe_dump_all(documents, f)
with open(sys.argv[1]) as f:
    documents = [d for d in yaml.safe_load_all(f) if d]
for container in pod(documents)["initContainers"]:
    container.pop("restartPolicy", None)
with open(sys.argv[3], "w") as f:
    yaml.safe_dump_all(documents, f)
PY
if validate "$scratch/unknown-field.yaml" >/dev/null 2>&1; then
    echo "error: kubernetes-validate accepted a manifest with an unknown field" >&2
    exit 1
fi
if "$python" scripts/manifest-policy.py "$manifests" "$scratch/not-a-sidecar.yaml" >/dev/null 2>&1; then
    echo "error: manifest-policy.py accepted authzd as a plain init container" >&2
    exit 1
fi
echo "negative checks: an unknown field and a non-sidecar authzd are rejected"
