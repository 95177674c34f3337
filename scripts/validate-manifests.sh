#!/usr/bin/env bash
# Every Kubernetes manifest Vireo ships (crds/ and deploy/kubernetes/) against the API schemas
# of Kubernetes 1.30 and 1.35 with kubernetes-validate --strict (unknown fields are errors).
# Vireo's own custom resources (vireo.dev) have no schema there; the API simulator checks them
# against crds/ when the tests apply them with kubectl.
set -euo pipefail
cd "$(dirname "$0")/.."
validate=target/pyenv/bin/kubernetes-validate
[ -x "$validate" ] || { echo "validate-manifests: run scripts/ensure-deps.sh test first" >&2; exit 1; }
mapfile -t files < <(find crds deploy/kubernetes -name '*.yaml' ! -name kustomization.yaml 2>/dev/null | sort)
[ ${#files[@]} -gt 0 ] || { echo "validate-manifests: no manifests found" >&2; exit 1; }
for v in 1.30.0 1.35.0; do
  "$validate" --strict --quiet -k "$v" "${files[@]}"
done
echo "validate-manifests: ${#files[@]} files pass kubernetes-validate --strict for 1.30 and 1.35"
