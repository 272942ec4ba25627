#!/usr/bin/env bash
# Writes prometheusrule.yaml, a PrometheusRule whose spec is deploy/prometheus/alerts.yaml
# (that file's groups, indented under spec:, its leading comment dropped). Run it after every
# change to alerts.yaml; `sync-rules.sh --check` exits 1 when prometheusrule.yaml is stale.
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
src="$here/../../../prometheus/alerts.yaml"
out="$here/prometheusrule.yaml"

render() {
  cat <<'HEAD'
# Generated from deploy/prometheus/alerts.yaml by sync-rules.sh: edit that file, then run
# deploy/kubernetes/overlays/monitoring/sync-rules.sh.
apiVersion: monitoring.coreos.com/v1
kind: PrometheusRule
metadata:
  name: kiln
spec:
HEAD
  # drop the file's own comment lines at the top level, indent the rest by two spaces, and
  # leave blank lines blank.
  sed -e '/^#/d' -e 's/^/  /' -e 's/^ *$//' "$src"
}

if [ "${1:-}" = "--check" ]; then
  if ! diff -u "$out" <(render); then
    echo "prometheusrule.yaml is stale: run $0" >&2
    exit 1
  fi
else
  render > "$out"
fi
