#!/usr/bin/env bash
# The service's pipeline, one stage per call: the GitHub Actions workflow calls it, and so do you, locally:
#
#   bash ci/pipeline.sh lint | unit | golden | bundle | image | smoke | push | deploy
#
# Written by slmlab.production.cicd. Every stage runs from the service's root folder and writes only under build/.
set -euo pipefail
cd "$(dirname "$0")/.."

SERVICE_HOST="${SERVICE_HOST:-@@HOST@@}"   # the name the Ingress serves (TLS certificate for it)
BUNDLE=build/bundle
mkdir -p build

suite_config() {
  # the test suite's settings (tests/config.json) + the parser version the service ships (app/service.json)
  python3 - <<'PY'
import json
config = json.load(open("tests/config.json", encoding="utf-8"))
config["version"] = json.load(open("app/service.json", encoding="utf-8"))["version"]
json.dump(config, open("build/suite-config.json", "w", encoding="utf-8"), indent=2)
PY
  export SLMLAB_TESTING_CONFIG=build/suite-config.json
}

stage_lint() {
  ruff check --no-cache app tests
}

stage_unit() {
  # the pure parts: prompt, parser, labels; no model is loaded
  suite_config
  python3 -m pytest tests -m "not model" -q -p no:cacheprovider --junitxml build/unit.xml
}

stage_golden() {
  # the model's replies against the golden file, and the accuracy gate on labelled tickets
  suite_config
  python3 -m pytest tests -m model -q -p no:cacheprovider --junitxml build/golden.xml
}

stage_bundle() {
  rm -rf "$BUNDLE"
  slmlab deploy render deploy/spec.yaml --out "$BUNDLE"            # renders, then runs every checker
  slmlab production layer "$BUNDLE" --host "$SERVICE_HOST"         # Ingress (TLS), alerts, dashboard, runbook
  slmlab deploy check "$BUNDLE"
  slmlab production readiness "$BUNDLE"                            # the checklist, item by item
}

stage_image() {
  [ -d "$BUNDLE" ] || stage_bundle
  slmlab deploy build "$BUNDLE"
  if command -v trivy >/dev/null; then
    for image in $(slmlab production images "$BUNDLE"); do
      trivy image --exit-code 1 --severity CRITICAL,HIGH --ignore-unfixed "$image"
    done
  else
    echo "scan: trivy is not installed here; the workflow scans the images with trivy-action"
  fi
}

stage_smoke() {
  # the built images, run as the manifests harden them, asked one question through the gateway
  slmlab deploy run "$BUNDLE" --check
}

stage_push() {
  # the scanned, smoke-tested images to the registry the manifests name; the password is read from stdin
  : "${REGISTRY_PASSWORD:?the push stage needs REGISTRY_USER and REGISTRY_PASSWORD}"
  cli="$(command -v docker || command -v podman)"
  images="$(slmlab production images "$BUNDLE")"
  "$cli" login "${images%%/*}" --username "$REGISTRY_USER" --password-stdin <<<"$REGISTRY_PASSWORD"
  for image in $images; do "$cli" push "$image"; done
}

stage_deploy() {
  # only in the workflow's gated job: KUBECONFIG_DATA comes from the environment's secret, never printed
  : "${KUBECONFIG_DATA:?the deploy stage needs the kubeconfig of the cluster in KUBECONFIG_DATA}"
  [ -d "$BUNDLE" ] || stage_bundle
  umask 077
  printf '%s' "$KUBECONFIG_DATA" > build/kubeconfig
  export KUBECONFIG="$PWD/build/kubeconfig"
  kubectl apply --server-side -f "$BUNDLE/k8s/"
  for manifest in "$BUNDLE"/k8s/*deployment.yaml; do kubectl rollout status -f "$manifest" --timeout=10m; done
}

case "${1:-}" in
  lint|unit|golden|bundle|image|smoke|push|deploy) "stage_$1" ;;
  *) echo "usage: $0 lint|unit|golden|bundle|image|smoke|push|deploy" >&2; exit 2 ;;
esac
