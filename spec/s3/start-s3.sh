#!/usr/bin/env bash
# Starts a single-node OpenStack Swift with its S3 API (s3api) on 127.0.0.1: the real
# S3-compatible server that spec/storage-s3*.spec.ts run against. Installs the Debian packages
# when they are missing, then writes configs and one-replica rings under $OCI_S3_DIR and starts
# memcached and the four Swift servers in the background. Running it again while they are up
# only waits for health and prints the settings. Stop them with spec/s3/stop-s3.sh.
#
# Prints, for `eval` or an env file:
#   S3_ENDPOINT=…  S3_REGION=…  S3_ACCESS_KEY_ID=…  S3_SECRET_ACCESS_KEY=…  S3_BUCKET=…
#
# Environment (all optional): OCI_S3_DIR (state folder), S3_PORT (8080), S3_MEMCACHED_PORT
# (11211), S3_BACKEND_PORT (6200: object; +1 container, +2 account), S3_BUCKET (oci-test).
# Objects are stored in $OCI_S3_DIR/devices, whose filesystem must take user xattrs (ext4 does).
set -euo pipefail

dir=${OCI_S3_DIR:-${TMPDIR:-/tmp}/express-oci-registry-s3}
port=${S3_PORT:-8080}
memcached_port=${S3_MEMCACHED_PORT:-11211}
object_port=${S3_BACKEND_PORT:-6200}
container_port=$((object_port + 1))
account_port=$((object_port + 2))
bucket=${S3_BUCKET:-oci-test}
devices=$dir/devices
user=$(id -un)
as_root=()
[ "$(id -u)" -eq 0 ] || as_root=(sudo)
started_at=$SECONDS

packages=(swift swift-proxy swift-account swift-container swift-object python3-swift memcached curl)
install_packages() {
  local wanted=()
  for package in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q 'ok installed' || wanted+=("$package")
  done
  [ ${#wanted[@]} -eq 0 ] && return
  echo "installing ${wanted[*]}" >&2
  # policy-rc.d answering 101 keeps the packages' maintainer scripts from starting system services.
  local added_policy=
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' | "${as_root[@]}" tee /usr/sbin/policy-rc.d >/dev/null
    "${as_root[@]}" chmod +x /usr/sbin/policy-rc.d
    added_policy=yes
  fi
  # Package lists fetched earlier (e.g. by .ci/run) are used as they are; update only when needed.
  local apt_install=("${as_root[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${wanted[@]}")
  "${apt_install[@]}" >/dev/null 2>&1 || { "${as_root[@]}" apt-get update -qq && "${apt_install[@]}" >/dev/null; }
  [ -z "$added_policy" ] || "${as_root[@]}" rm -f /usr/sbin/policy-rc.d
}

running() { [ -f "$dir/pids/$1" ] && kill -0 "$(cat "$dir/pids/$1")" 2>/dev/null; }

write_server_config() { # kind port
  cat > "$dir/conf/$1-server.conf" <<CONF
[DEFAULT]
bind_ip = 127.0.0.1
bind_port = $2
workers = 0
user = $user
swift_dir = $dir/conf
devices = $devices
mount_check = false

[pipeline:main]
pipeline = healthcheck $1-server

[filter:healthcheck]
use = egg:swift#healthcheck

[app:$1-server]
use = egg:swift#$1
CONF
}

write_configs() {
  mkdir -p "$dir/conf" "$devices/disk" "$dir/pids" "$dir/logs"
  if [ ! -s /etc/swift/swift.conf ]; then # Swift always reads this one path
    "${as_root[@]}" mkdir -p /etc/swift
    printf '[swift-hash]\nswift_hash_path_suffix = oci\nswift_hash_path_prefix = oci\n\n[storage-policy:0]\nname = gold\ndefault = yes\n' \
      | "${as_root[@]}" tee /etc/swift/swift.conf >/dev/null
  fi
  write_server_config account "$account_port"
  write_server_config container "$container_port"
  write_server_config object "$object_port"
  # The object server answers a PUT or DELETE only once the container listing has the change, so a
  # listing right after a write sees it (nothing runs Swift's asynchronous updater here).
  printf '\n# wait for the container listing update\ncontainer_update_timeout = 5\n' >> "$dir/conf/object-server.conf"
  cat > "$dir/conf/proxy-server.conf" <<CONF
[DEFAULT]
bind_ip = 127.0.0.1
bind_port = $port
workers = 0
user = $user
swift_dir = $dir/conf

[pipeline:main]
pipeline = catch_errors gatekeeper healthcheck proxy-logging cache listing_formats s3api tempauth copy slo dlo symlink proxy-logging proxy-server

[app:proxy-server]
use = egg:swift#proxy
account_autocreate = true

[filter:s3api]
use = egg:swift#s3api
location = us-east-1
s3_acl = false
max_upload_part_num = 10000

# access key "test:tester", secret "testing"
[filter:tempauth]
use = egg:swift#tempauth
user_test_tester = testing .admin

[filter:cache]
use = egg:swift#memcache
memcache_servers = 127.0.0.1:$memcached_port

[filter:slo]
use = egg:swift#slo
max_manifest_segments = 10000

[filter:catch_errors]
use = egg:swift#catch_errors

[filter:gatekeeper]
use = egg:swift#gatekeeper

[filter:healthcheck]
use = egg:swift#healthcheck

[filter:proxy-logging]
use = egg:swift#proxy_logging

[filter:listing_formats]
use = egg:swift#listing_formats

[filter:copy]
use = egg:swift#copy

[filter:dlo]
use = egg:swift#dlo

[filter:symlink]
use = egg:swift#symlink
CONF
}

build_rings() {
  local kind ring_port
  for kind in account container object; do
    ring_port=${kind}_port
    ring_port=${!ring_port}
    # Rebuild when missing or made for other ports.
    if [ -s "$dir/conf/$kind.ring.gz" ] && [ "$(cat "$dir/conf/$kind.port" 2>/dev/null)" = "$ring_port" ]; then continue; fi
    rm -f "$dir/conf/$kind.builder" "$dir/conf/$kind.ring.gz"
    swift-ring-builder "$dir/conf/$kind.builder" create 8 1 1 >/dev/null
    swift-ring-builder "$dir/conf/$kind.builder" add "r1z1-127.0.0.1:$ring_port/disk" 100 >/dev/null
    swift-ring-builder "$dir/conf/$kind.builder" rebalance >/dev/null || [ -s "$dir/conf/$kind.ring.gz" ]
    echo "$ring_port" > "$dir/conf/$kind.port"
  done
}

launch() { # name command...
  local name=$1
  shift
  nohup "$@" >>"$dir/logs/$name.log" 2>&1 </dev/null &
  echo $! > "$dir/pids/$name"
}

start_servers() {
  "$(dirname "$0")/stop-s3.sh" >/dev/null
  write_configs
  build_rings
  local memcached_user=()
  [ "$(id -u)" -ne 0 ] || memcached_user=(-u "$user")
  launch memcached memcached "${memcached_user[@]}" -l 127.0.0.1 -p "$memcached_port" -m 32
  launch account swift-account-server "$dir/conf/account-server.conf"
  launch container swift-container-server "$dir/conf/container-server.conf"
  launch object swift-object-server "$dir/conf/object-server.conf"
  launch proxy swift-proxy-server "$dir/conf/proxy-server.conf"
}

# Healthy = every server answers its healthcheck and tempauth issues a token the account accepts.
healthy() {
  local p token
  for p in "$account_port" "$container_port" "$object_port" "$port"; do
    curl -fs -m 2 "http://127.0.0.1:$p/healthcheck" >/dev/null || return 1
  done
  token=$(curl -fs -m 5 -o /dev/null -D - -H 'X-Auth-User: test:tester' -H 'X-Auth-Key: testing' "http://127.0.0.1:$port/auth/v1.0" \
    | tr -d '\r' | sed -n 's/^[Xx]-[Aa]uth-[Tt]oken: //p')
  [ -n "$token" ] && curl -fs -m 5 -o /dev/null -I -H "X-Auth-Token: $token" "http://127.0.0.1:$port/v1/AUTH_test"
}

install_packages
all_running=yes
for name in memcached account container object proxy; do running "$name" || all_running=; done
[ -n "$all_running" ] || start_servers

for attempt in $(seq 1 240); do
  healthy && break
  for name in memcached account container object proxy; do
    running "$name" || { echo "$name exited; its log:" >&2; tail -n 20 "$dir/logs/$name.log" >&2; exit 1; }
  done
  [ "$attempt" -lt 240 ] || { echo "Swift did not become healthy in 60 s (logs in $dir/logs)" >&2; exit 1; }
  sleep 0.25
done

echo "Swift S3 API ready on 127.0.0.1:$port after $((SECONDS - started_at)) s" >&2
cat <<ENV
S3_ENDPOINT=http://127.0.0.1:$port
S3_REGION=us-east-1
S3_ACCESS_KEY_ID=test:tester
S3_SECRET_ACCESS_KEY=testing
S3_BUCKET=$bucket
ENV
