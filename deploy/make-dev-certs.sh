#!/usr/bin/env bash
# Development certificates for cluster TLS in compose (docker-compose.tls.yml): a cluster CA of its own, a
# certificate per silo (server and client authentication: silos accept and open connections) and one for the
# tpc client (client authentication), PEM, RSA 2048, valid for DAYS days (the CA one day longer, so no
# certificate outlives its issuer). For development and tests only: a production CA's key belongs offline.
#
# Usage: deploy/make-dev-certs.sh [DIR] [DAYS]     DIR defaults to ./secrets/tls (ignored by git and docker), DAYS to 30
#
# It refuses to overwrite an existing DIR/cluster-ca.crt (delete DIR to start over). The keys are readable
# only by the containers' user (APP_UID 1654 of the .NET images) when run as root, else by everyone (0644):
# the containers run as that user and must read them through the bind mount.
set -euo pipefail

dir=${1:-secrets/tls}
days=${2:-30}
container_uid=1654
[[ $days =~ ^[1-9][0-9]*$ ]] || { echo "error: DAYS must be a positive number of days, not '$days'" >&2; exit 2; }
command -v openssl >/dev/null || { echo "error: openssl not found (Debian: apt-get install openssl)" >&2; exit 1; }
if [ -e "$dir/cluster-ca.crt" ]; then
  echo "error: $dir/cluster-ca.crt exists; delete $dir to make new certificates" >&2
  exit 1
fi
mkdir -p "$dir"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

openssl req -x509 -newkey rsa:2048 -nodes -days $((days + 1)) -subj "/CN=twopc dev cluster CA" \
  -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" \
  -keyout "$work/cluster-ca.key" -out "$dir/cluster-ca.crt" 2>/dev/null

issue() { # name usages
  local name=$1 usages=$2
  openssl req -newkey rsa:2048 -nodes -subj "/CN=$name" -keyout "$dir/$name.key" -out "$work/$name.csr" 2>/dev/null
  printf 'basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=%s\n' "$usages" >"$work/$name.ext"
  openssl x509 -req -in "$work/$name.csr" -CA "$dir/cluster-ca.crt" -CAkey "$work/cluster-ca.key" -CAserial "$work/cluster-ca.srl" -CAcreateserial \
    -days "$days" -extfile "$work/$name.ext" -out "$dir/$name.crt" 2>/dev/null
  if [ "$(id -u)" = 0 ]; then
    chown "$container_uid" "$dir/$name.key"
    chmod 0400 "$dir/$name.key"
  else
    chmod 0644 "$dir/$name.key"
  fi
}

for silo in silo-coordinator silo-inventory silo-payment silo-shipping; do
  issue "$silo" serverAuth,clientAuth
done
issue client clientAuth
chmod 0644 "$dir"/*.crt
# The CA's key is not kept: nothing more can be issued, so a leaked development CA admits nobody new.
echo "Wrote $dir: cluster-ca.crt, silo-{coordinator,inventory,payment,shipping}.crt/.key, client.crt/.key (valid $days days)"
