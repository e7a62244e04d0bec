#!/usr/bin/env bash
# Puts a new component on every replica of the compose fleet, one replica at a
# time: the next is touched only once the one before answers with the new
# component (its log names the file's SHA-256) and is healthy. The load
# balancer keeps sending to the others meanwhile.
#
#   deploy/rolling-upgrade.sh NEW.wasm             # hot swap: into the replica's
#                                                  # volume, then SIGHUP
#   deploy/rolling-upgrade.sh --replace NEW.wasm   # stop (drains), put it in the
#                                                  # volume, start, wait healthy
#
# Environment: COMPOSE (the Compose command; default `docker compose`, or
# `docker-compose` where only Compose v1 is installed), and Compose's own
# COMPOSE_PROJECT_NAME and COMPOSE_FILE; REPLICAS (default "replica1 replica2
# replica3"); UPGRADE_TIMEOUT in seconds per replica (default 60).
set -euo pipefail

die() { echo "rolling-upgrade: $*" >&2; exit 1; }

mode=hot-swap
if [ "${1:-}" = "--replace" ]; then
  mode=replace
  shift
fi
new=${1:-}
[ -n "$new" ] || die "usage: $0 [--replace] NEW.wasm"
[ -f "$new" ] || die "$new is not a file"

if [ -n "${COMPOSE:-}" ]; then
  read -r -a compose <<<"$COMPOSE"
elif docker compose version >/dev/null 2>&1; then
  compose=(docker compose)
elif command -v docker-compose >/dev/null 2>&1; then
  compose=(docker-compose)
else
  die "neither \`docker compose\` nor \`docker-compose\` runs: install Compose"
fi

replicas=${REPLICAS:-replica1 replica2 replica3}
timeout=${UPGRADE_TIMEOUT:-60}
sha=$(sha256sum "$new" | cut -d' ' -f1)
# Where compose.yaml has each replica read its component.
target=/app/guest/replica.wasm

# Waits until the container's log, since `$3`, says it serves the new
# component and its health check passes.
wait_for_new() {
  local replica=$1 id=$2 since=$3 waited=0
  until docker logs --since "$since" "$id" 2>&1 | grep -q "sha256 $sha" \
    && [ "$(docker inspect --format '{{.State.Health.Status}}' "$id")" = healthy ]; do
    sleep 0.2
    waited=$((waited + 1))
    if [ "$waited" -gt $((timeout * 5)) ]; then
      docker logs --tail 20 "$id" >&2 || true
      die "$replica does not serve $new after ${timeout}s; the replicas after it are untouched"
    fi
  done
}

for replica in $replicas; do
  id=$("${compose[@]}" ps -q "$replica")
  [ -n "$id" ] || die "no container for $replica: is the fleet up?"
  since=$(date -u +%Y-%m-%dT%H:%M:%S.%NZ)
  case $mode in
    hot-swap)
      docker cp "$new" "$id:$target"
      docker kill --signal HUP "$id" >/dev/null
      ;;
    replace)
      "${compose[@]}" stop -t 10 "$replica" >/dev/null
      docker cp "$new" "$id:$target"
      "${compose[@]}" start "$replica" >/dev/null
      ;;
  esac
  wait_for_new "$replica" "$id" "$since"
  echo "$replica serves $new (sha256 $sha)"
done
