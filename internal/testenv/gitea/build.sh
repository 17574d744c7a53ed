#!/usr/bin/env bash
# Builds Gitea (the real Git host internal/e2e runs on loopback) from the Go
# module proxy into $1, once: a folder that already holds the binary is
# reused. Next to the binary it copies the options/, templates/ and public/
# folders of the same Gitea module, which `gitea web` reads from its work dir.
# A cold build takes a few minutes on two cores, so it says what it is doing
# and how long it has been at it.
set -euo pipefail
out=${1:?usage: build.sh OUTPUT_DIR}
if [ -x "$out/gitea" ] && [ -d "$out/options" ] && [ -d "$out/templates" ]; then
  echo "[gitea] using cached Gitea in $out"
  exit 0
fi
cd "$(dirname "$0")"
rm -rf "$out.tmp"
mkdir -p "$out.tmp"
echo "[gitea] building Gitea from source into $out"
echo "[gitea] a first build takes about 3-5 minutes on 2 cores; later runs reuse it"
start=$(date +%s)
go build -tags 'sqlite sqlite_unlock_notify' -o "$out.tmp/gitea" code.gitea.io/gitea &
pid=$!
while kill -0 "$pid" 2>/dev/null; do
  sleep 15
  if kill -0 "$pid" 2>/dev/null; then
    e=$(( $(date +%s) - start ))
    printf '[gitea] still building: %dm%02ds elapsed\n' $((e/60)) $((e%60))
  fi
done
wait "$pid"
src=$(go list -m -f '{{.Dir}}' code.gitea.io/gitea)
for d in options templates public; do
  cp -r "$src/$d" "$out.tmp/$d"
done
# The module cache is read-only; the copies must be readable by the
# unprivileged user Gitea runs as, and removable by whoever cleans the cache.
chmod -R u+w,a+rX "$out.tmp"
rm -rf "$out"
mv "$out.tmp" "$out"
e=$(( $(date +%s) - start ))
printf '[gitea] built in %dm%02ds\n' $((e/60)) $((e%60))
