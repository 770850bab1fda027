#!/usr/bin/env bash
# Stops the servers spec/s3/start-s3.sh started, by the process ids it saved. Data stays in
# $OCI_S3_DIR/devices (remove that folder for an empty store).
set -u
dir=${OCI_S3_DIR:-${TMPDIR:-/tmp}/express-oci-registry-s3}
stopping=()
for name in proxy object container account memcached; do
  file=$dir/pids/$name
  [ -f "$file" ] || continue
  pid=$(cat "$file")
  rm -f "$file"
  kill "$pid" 2>/dev/null && stopping+=("$pid")
done
for _ in $(seq 1 100); do
  alive=()
  for pid in "${stopping[@]}"; do kill -0 "$pid" 2>/dev/null && alive+=("$pid"); done
  [ ${#alive[@]} -eq 0 ] && exit 0
  sleep 0.1
done
kill -KILL "${alive[@]}" 2>/dev/null
exit 0
