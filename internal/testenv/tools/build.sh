#!/usr/bin/env bash
# Builds the control plane the tests and `make run` use (kube-apiserver,
# kube-controller-manager, etcd), and the kubectl `make bench` compares
# against, from the Go module proxy into $1, once: a folder that already
# holds all four is reused. A cold build takes minutes
# on two cores, so it says what it is doing and how long it has been at it.
set -euo pipefail
out=${1:?usage: build.sh OUTPUT_DIR}
bins=(etcd kube-apiserver kube-controller-manager kubectl)
have_all=1
for b in "${bins[@]}"; do [ -x "$out/$b" ] || have_all=0; done
if [ "$have_all" = 1 ]; then
  echo "[control plane] using cached binaries in $out"
  exit 0
fi
cd "$(dirname "$0")"
mkdir -p "$out.tmp"
echo "[control plane] building kube-apiserver, kube-controller-manager, etcd and kubectl from source into $out"
echo "[control plane] a first build takes 10-15 minutes on 2 cores (longer while other builds run); later runs reuse it"
start=$(date +%s)
go build -o "$out.tmp/" ./etcd ./kube-apiserver ./kube-controller-manager ./kubectl &
pid=$!
while kill -0 "$pid" 2>/dev/null; do
  sleep 15
  if kill -0 "$pid" 2>/dev/null; then
    e=$(( $(date +%s) - start ))
    done_bins=$(ls "$out.tmp" 2>/dev/null | tr '\n' ' ')
    printf '[control plane] still building: %dm%02ds elapsed%s\n' $((e/60)) $((e%60)) "${done_bins:+ (done: $done_bins)}"
  fi
done
wait "$pid"
rm -rf "$out"
mv "$out.tmp" "$out"
e=$(( $(date +%s) - start ))
printf '[control plane] built in %dm%02ds\n' $((e/60)) $((e%60))
