#!/usr/bin/env bash
# The compose deployment for real (CI runs this after the test suite): builds the images, starts
# docker-compose.yml, waits for every silo's readiness probe, seeds, places an order, stops the payment
# silo (an order answers "payment service is down", stock still reads), starts it again, recovers, checks
# the invariants and removes everything. The silos run with per-service PostgreSQL logins (the provision
# step creates them): it checks that no silo holds another service's or the admin password, and that the
# payment login is refused by the inventory database but reads its own. The commands it runs are README's
# "Deploying with Docker Compose" sequence (a test keeps the two the same).
#
# Usage: deploy/compose-smoke-test.sh   (as root; needs docker.io, debootstrap and docker-compose or the compose plugin)
#
# It uses its own Docker daemon (deploy/dockerd.sh: own socket, data-root and pidfile) and starts it if it
# is not running; base images missing there are built offline (deploy/offline/build-base-images.sh). On exit,
# also on failure or Ctrl+C, it removes the compose project's containers, network and volume and stops
# the daemon if it started it. Images and the build cache stay in the daemon's data-root
# (TWOPC_DOCKERD_DATA, default /var/lib/twopc-dockerd) so the next run is warm; delete it for a cold run.
set -Eeuo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"

started=$(date +%s)
timings=()
phase_start=$started
phase() {
  local now
  now=$(date +%s)
  timings+=("$(printf '%-34s %4d s' "$1" $((now - phase_start)))")
  phase_start=$now
}
say() { echo "[smoke $(date +%H:%M:%S)] $*"; }
fail() { echo "[smoke] FAILED: $*" >&2; exit 1; }

[ "$(id -u)" = 0 ] || fail "needs root (it starts its own Docker daemon)"
command -v docker >/dev/null || fail "docker client not found (Debian: apt-get install docker.io)"
docker compose version >/dev/null 2>&1 || command -v docker-compose >/dev/null \
  || fail "neither the compose plugin (docker compose) nor docker-compose found (Debian: apt-get install docker-compose)"

daemon_started=false
project_up=false
compose() {
  if docker compose version >/dev/null 2>&1; then docker compose "$@"; else docker-compose "$@"; fi
}

cleanup() {
  local status=$?
  set +e
  if $project_up; then
    if [ "$status" != 0 ]; then
      echo "---- compose ps and the last log lines (failure) ----" >&2
      compose --profile tools ps >&2
      compose --profile tools logs --no-color --tail=40 >&2
    fi
    say "removing the compose project (containers, network, volume)"
    compose --profile tools down -v --remove-orphans --timeout 10 >/dev/null 2>&1 \
      || echo "[smoke] warning: compose down failed; remove project $COMPOSE_PROJECT_NAME by hand" >&2
  fi
  if $daemon_started; then
    say "stopping the Docker daemon this run started"
    "$root/deploy/dockerd.sh" stop || echo "[smoke] warning: could not stop the Docker daemon" >&2
  fi
  phase "cleanup"
  echo "---- timings ----"
  printf '%s\n' "${timings[@]}"
  printf '%-34s %4d s\n' "total" $(($(date +%s) - started))
  if [ "$status" = 0 ]; then echo "compose smoke test: PASSED"; else echo "compose smoke test: FAILED (exit $status)"; fi
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ---- engine and base images ----
if "$root/deploy/dockerd.sh" status; then
  say "using the running private Docker daemon"
else
  say "starting a private Docker daemon"
  daemon_started=true
fi
DOCKER_HOST=$("$root/deploy/dockerd.sh" start)
export DOCKER_HOST
phase "docker daemon"
"$root/deploy/offline/build-base-images.sh"
phase "base images"

# ---- settings: a fresh project, password and host port; nothing written into the repository ----
run=$(head -c 6 /dev/urandom | od -An -tx1 | tr -d ' \n')
export COMPOSE_PROJECT_NAME="twopcsmoke$run"
secret() { head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n'; }
POSTGRES_PASSWORD=$(secret)
TWOPC_COORDINATOR_DB_PASSWORD=$(secret)
TWOPC_INVENTORY_DB_PASSWORD=$(secret)
TWOPC_PAYMENT_DB_PASSWORD=$(secret)
TWOPC_SHIPPING_DB_PASSWORD=$(secret)
export POSTGRES_PASSWORD TWOPC_COORDINATOR_DB_PASSWORD TWOPC_INVENTORY_DB_PASSWORD TWOPC_PAYMENT_DB_PASSWORD TWOPC_SHIPPING_DB_PASSWORD
# The engine's bridge has no route out (the daemon runs with --iptables=false): restore over the host network.
export TWOPC_BUILD_NETWORK=host
TWOPC_POSTGRES_PORT=
for port in $(seq 55432 55531); do
  if ! (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then TWOPC_POSTGRES_PORT=$port; break; fi
done
[ -n "$TWOPC_POSTGRES_PORT" ] || fail "no free host port in 55432-55531 for PostgreSQL"
export TWOPC_POSTGRES_PORT
sku="sku-$run"
account="acct-$run"
order="order-$run"

# ---- README's sequence ----
say "building the silo and tpc images"
compose --profile tools build
phase "build project images"

project_up=true
compose up -d
phase "up -d"

say "waiting for postgres and the four silos to report healthy"
deadline=$(($(date +%s) + 240))
while true; do
  states=""
  healthy=0
  for service in postgres silo-coordinator silo-inventory silo-payment silo-shipping; do
    id=$(compose ps -q "$service")
    state=$(docker inspect --format '{{if .State.Health}}{{.State.Health.Status}}{{else}}{{.State.Status}}{{end}}' "$id" 2>/dev/null || echo missing)
    restarts=$(docker inspect --format '{{.RestartCount}}' "$id" 2>/dev/null || echo 0)
    # A crash-looping service never gets healthy: say so now rather than at the deadline.
    [ "$restarts" = 0 ] || fail "$service exited and was restarted $restarts time(s) while starting"
    states+="$service=$state "
    [ "$state" = healthy ] && healthy=$((healthy + 1))
  done
  [ "$healthy" = 5 ] && break
  [ "$(date +%s)" -lt "$deadline" ] || fail "not healthy within 240 s: $states"
  sleep 2
done
say "healthy: $states"
phase "wait for health"

# ---- least privilege: each silo holds its own login only; the payment login cannot reach inventory ----
declare -A own=([silo-coordinator]=COORDINATOR [silo-inventory]=INVENTORY [silo-payment]=PAYMENT [silo-shipping]=SHIPPING)
for service in "${!own[@]}"; do
  environment=$(docker inspect --format '{{range .Config.Env}}{{println .}}{{end}}' "$(compose ps -q "$service")")
  for name in POSTGRES COORDINATOR INVENTORY PAYMENT SHIPPING; do
    if [ "$name" = POSTGRES ]; then var=POSTGRES_PASSWORD; else var="TWOPC_${name}_DB_PASSWORD"; fi
    if [ "$name" = "${own[$service]}" ]; then
      grep -qF "Password=${!var};" <<<"$environment" || fail "$service does not log in with its own password ($var)"
    elif grep -qF "${!var}" <<<"$environment"; then
      fail "$service holds $var: a silo may hold only its own service's credentials"
    fi
  done
done
set +e
out=$(compose exec -T postgres psql "host=localhost dbname=twopc_inventory user=twopc_payment password=$TWOPC_PAYMENT_DB_PASSWORD" -c "select 1" 2>&1)
status=$?
set -e
echo "$out"
[ "$status" != 0 ] || fail "the payment login connected to the inventory database"
grep -q 'permission denied for database "twopc_inventory"' <<<"$out" || fail "the payment login should be refused by the inventory database (permission denied)"
out=$(compose exec -T postgres psql "host=localhost dbname=twopc_payments user=twopc_payment password=$TWOPC_PAYMENT_DB_PASSWORD" -c "select count(*) from twopc_grain_state" 2>&1) \
  || fail "the payment login could not read its own database: $out"
say "payment login: refused by twopc_inventory, reads twopc_payments"
phase "least privilege"

compose run --rm client seed --sku "$sku=10" --account "$account=10000"
out=$(compose run --rm client order --id "$order-1" --account "$account" --address "1 Main St" --line "$sku:2:100" 2>&1) \
  || fail "the first order did not commit: $out"
echo "$out"
grep -q ": Committed" <<<"$out" || fail "the first order did not commit: $out"
phase "seed and order"

compose stop silo-payment
set +e
out=$(compose run --rm --no-deps client order --id "$order-2" --account "$account" --address "1 Main St" --line "$sku:1:100" 2>&1)
status=$?
set -e
echo "$out"
[ "$status" = 1 ] || fail "an order during the payment outage should exit 1, not $status"
grep -q "payment service is down" <<<"$out" || fail "an order during the payment outage should answer that the payment service is down"
out=$(compose run --rm --no-deps client stock "$sku" 2>&1) || fail "stock did not answer during the payment outage: $out"
echo "$out"
grep -Eq "^$sku +8 +0 +8 " <<<"$out" || fail "stock of $sku should be 8 on hand, 0 reserved, 8 available during the outage"
phase "payment outage"

compose start silo-payment
compose run --rm client recover --all
out=$(compose run --rm client check 2>&1) || fail "tpc check failed: $out"
echo "$out"
grep -q "OK: I1-I5 hold" <<<"$out" || fail "tpc check did not report OK"
phase "restart, recover, check"

# The console stays quiet by default and Npgsql never looks for Kerberos (GSS Encryption Mode=Disable).
logs=$(compose logs --no-color silo-coordinator silo-inventory silo-payment silo-shipping 2>&1)
if grep -qi "libgssapi" <<<"$logs"; then fail "a silo logged the missing Kerberos library (libgssapi_krb5)"; fi
if grep -q "Polly" <<<"$logs"; then fail "a silo logged Polly retries at the default console level"; fi
lines=$(grep -c '' <<<"$logs")
say "silo console output: $lines lines in all"

compose down -v
project_up=false
phase "down -v"
