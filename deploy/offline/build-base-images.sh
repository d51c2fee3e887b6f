#!/usr/bin/env bash
# Builds the three base images the project's Dockerfiles and docker-compose.yml start FROM, without a
# container registry: mcr.microsoft.com/dotnet/sdk:10.0, mcr.microsoft.com/dotnet/aspnet:10.0 and
# postgres:15, under those official tags, from Debian bookworm (debootstrap from a Debian mirror),
# this host's installed .NET SDK and ASP.NET Core runtime, and Debian's postgresql-15.
#
# This is the offline / air-gapped path (docs/operations.md, "Compose without a registry"): it needs a
# Debian mirror (DEBIAN_MIRROR, default http://deb.debian.org/debian; a local mirror works), debootstrap,
# an installed .NET 10 SDK (dotnet --list-sdks) and a running Docker daemon (DOCKER_HOST as usual).
# NuGet restore inside the SDK image still needs a NuGet feed (NuGet.config) or a local one.
#
# Usage: deploy/offline/build-base-images.sh [--force]
#   --force   rebuild the images even when the tags exist (the debootstrap cache is kept)
# Environment:
#   TWOPC_OFFLINE_CACHE   debootstrap output is cached here as tarballs (default /var/cache/twopc-offline-images);
#                         a second run reuses it and takes seconds; delete the directory to start cold
#   DEBIAN_MIRROR         Debian mirror for debootstrap (default http://deb.debian.org/debian)
#   DOTNET_ROOT           the .NET installation to copy (default: the one `dotnet` runs from)
#
# The images are not the official ones: only what this project uses of them is reproduced (the dotnet
# layout, APP_UID and the usual environment in the .NET images; POSTGRES_PASSWORD, POSTGRES_USER,
# POSTGRES_DB, PGDATA and /docker-entrypoint-initdb.d in the PostgreSQL image). The SDK image (build
# stage only) also carries this host's extra CA certificates (/usr/local/share/ca-certificates), so
# restore works behind a TLS-inspecting proxy; the runtime images do not.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
cache=${TWOPC_OFFLINE_CACHE:-/var/cache/twopc-offline-images}
mirror=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
suite=bookworm
force=false
for arg in "$@"; do
  case "$arg" in
    --force) force=true ;;
    -h|--help) sed -n '2,25p' "$0"; exit 0 ;;
    *) echo "error: unknown argument '$arg' (expected --force)" >&2; exit 2 ;;
  esac
done

sdk_tag=mcr.microsoft.com/dotnet/sdk:10.0
aspnet_tag=mcr.microsoft.com/dotnet/aspnet:10.0
postgres_tag=postgres:15
app_uid=1654

die() { echo "error: $*" >&2; exit 1; }
log() { echo "[base-images $(date +%H:%M:%S)] $*" >&2; }

[ "$(id -u)" = 0 ] || die "debootstrap and chroot need root"
command -v docker >/dev/null || die "docker client not found (Debian: apt-get install docker.io)"
command -v debootstrap >/dev/null || die "debootstrap not found (Debian: apt-get install debootstrap)"
docker version --format '{{.Server.Version}}' >/dev/null 2>&1 || die "no Docker daemon answers at ${DOCKER_HOST:-the default socket}"

if [ -z "${DOTNET_ROOT:-}" ]; then
  dotnet_bin=$(command -v dotnet) || die "dotnet not found; install the .NET 10 SDK or set DOTNET_ROOT"
  DOTNET_ROOT=$(dirname "$(readlink -f "$dotnet_bin")")
fi
[ -x "$DOTNET_ROOT/dotnet" ] || die "DOTNET_ROOT=$DOTNET_ROOT has no dotnet executable"
# The newest 10.0 runtime and SDK installed (the images carry exactly these).
newest_10() {
  local dir
  for dir in "$1"/10.0.*; do [ -d "$dir" ] && basename "$dir"; done | sort -V | tail -1
}
netcore_version=$(newest_10 "$DOTNET_ROOT/shared/Microsoft.NETCore.App")
aspnet_version=$(newest_10 "$DOTNET_ROOT/shared/Microsoft.AspNetCore.App")
sdk_version=$(newest_10 "$DOTNET_ROOT/sdk")
[ -n "$netcore_version" ] || die "no .NET 10 runtime (Microsoft.NETCore.App 10.0.x) under $DOTNET_ROOT"
[ -n "$aspnet_version" ] || die "no ASP.NET Core 10 runtime (Microsoft.AspNetCore.App 10.0.x) under $DOTNET_ROOT"
[ -n "$sdk_version" ] || die "no .NET 10 SDK under $DOTNET_ROOT/sdk"

have() { docker image inspect "$1" >/dev/null 2>&1; }
if ! $force && have "$sdk_tag" && have "$aspnet_tag" && have "$postgres_tag"; then
  log "all three base images exist ($sdk_tag, $aspnet_tag, $postgres_tag); --force rebuilds them"
  exit 0
fi

mkdir -p "$cache"
work=$(mktemp -d /var/tmp/twopc-base-images.XXXXXX)
# debootstrap mounts /proc and /sys in its target: an interrupted run can leave them there, so unmount before deleting.
remove_work() {
  awk -v dir="$work/" 'index($2, dir) == 1 { print $2 }' /proc/mounts | sort -r | while read -r mount; do umount -l "$mount" || true; done
  rm -rf --one-file-system "$work"
}
trap remove_work EXIT
trap 'exit 130' INT TERM

# A debootstrapped root file system as a cached tarball; the name carries the package list, so changing it re-runs debootstrap.
rootfs_path() {
  local key
  key=$(printf '%s %s %s' "$suite" "$mirror" "$2" | sha256sum | cut -c1-12)
  echo "$cache/$1-$suite-$key.tar"
}

build_rootfs() {
  local name=$1 include=$2 tarball=$3
  log "debootstrap $suite ($name: $include) from $mirror; cached as $tarball"
  local target="$work/debootstrap-$name"
  debootstrap --variant=minbase --include="$include" "$suite" "$target" "$mirror" >"$work/debootstrap-$name.log" 2>&1 \
    || { tail -20 "$work/debootstrap-$name.log" >&2; die "debootstrap of the $name root file system failed (log above)"; }
  rm -rf "$target"/var/cache/apt/archives/*.deb "$target"/var/lib/apt/lists/* "$target"/tmp/* "$target"/var/log/*.log
  tar -C "$target" --numeric-owner -cf "$tarball.partial" .
  mv "$tarball.partial" "$tarball"
  rm -rf --one-file-system "$target"
}

# Unpacks a cached root file system into a fresh staging directory.
stage() {
  local tarball=$1 dir=$2
  rm -rf "$dir" && mkdir -p "$dir"
  tar -C "$dir" --numeric-owner -xf "$tarball"
}

# One-layer image from a staging directory, with the image's configuration as Dockerfile instructions.
import() {
  local dir=$1 tag=$2
  shift 2
  local changes=()
  for change in "$@"; do changes+=(--change "$change"); done
  log "importing $tag"
  local previous
  previous=$(docker image inspect --format '{{.Id}}' "$tag" 2>/dev/null || true)
  tar -C "$dir" --numeric-owner -c . | docker import "${changes[@]}" - "$tag" >/dev/null
  # A rebuild (--force) would leave the old image behind untagged; it stays only while something uses it.
  if [ -n "$previous" ]; then docker rmi "$previous" >/dev/null 2>&1 || true; fi
}

# What .NET needs from the OS (the official runtime-deps list), without Kerberos: see docs/operations.md on GSS.
dotnet_packages=ca-certificates,libc6,libgcc-s1,libicu72,libssl3,libstdc++6,tzdata,zlib1g
postgres_packages=ca-certificates,postgresql-15,tzdata
dotnet_rootfs=$(rootfs_path dotnet "$dotnet_packages")
postgres_rootfs=$(rootfs_path postgres "$postgres_packages")
# Both at once: debootstrap mostly waits for the mirror.
builds=()
if [ -s "$dotnet_rootfs" ]; then log "reusing $dotnet_rootfs"; else build_rootfs dotnet "$dotnet_packages" "$dotnet_rootfs" & builds+=($!); fi
if [ -s "$postgres_rootfs" ]; then log "reusing $postgres_rootfs"; else build_rootfs postgres "$postgres_packages" "$postgres_rootfs" & builds+=($!); fi
for build in "${builds[@]}"; do
  wait "$build" || die "building a root file system failed"
done

path_env='ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin'
add_app_user() {
  chroot "$1" groupadd --gid=$app_uid app
  chroot "$1" useradd --no-log-init --uid=$app_uid --gid=$app_uid --create-home app
}

# aspnet:10.0 - the .NET and ASP.NET Core shared frameworks, the `app` user (APP_UID), dotnet on PATH.
aspnet="$work/aspnet"
stage "$dotnet_rootfs" "$aspnet"
add_app_user "$aspnet"
mkdir -p "$aspnet/usr/share/dotnet/shared"
cp -a "$DOTNET_ROOT/dotnet" "$DOTNET_ROOT/host" "$DOTNET_ROOT/LICENSE.txt" "$aspnet/usr/share/dotnet/"
mkdir -p "$aspnet/usr/share/dotnet/shared/Microsoft.NETCore.App" "$aspnet/usr/share/dotnet/shared/Microsoft.AspNetCore.App"
cp -a "$DOTNET_ROOT/shared/Microsoft.NETCore.App/$netcore_version" "$aspnet/usr/share/dotnet/shared/Microsoft.NETCore.App/"
cp -a "$DOTNET_ROOT/shared/Microsoft.AspNetCore.App/$aspnet_version" "$aspnet/usr/share/dotnet/shared/Microsoft.AspNetCore.App/"
ln -sf /usr/share/dotnet/dotnet "$aspnet/usr/bin/dotnet"
dotnet_env=(
  "$path_env"
  "ENV APP_UID=$app_uid"
  "ENV ASPNETCORE_HTTP_PORTS=8080"
  "ENV DOTNET_RUNNING_IN_CONTAINER=true"
  "ENV DOTNET_VERSION=$netcore_version"
  "ENV ASPNET_VERSION=$aspnet_version"
)
import "$aspnet" "$aspnet_tag" "${dotnet_env[@]}"

# sdk:10.0 - the aspnet image plus the SDK and this host's extra CA certificates (build stage only).
sdk="$aspnet"
mkdir -p "$sdk/usr/share/dotnet/sdk"
cp -a "$DOTNET_ROOT/sdk/$sdk_version" "$sdk/usr/share/dotnet/sdk/"
# Targeting packs and workload manifests: a build needs them and would otherwise download them.
for dir in packs sdk-manifests; do
  [ -d "$DOTNET_ROOT/$dir" ] && cp -a "$DOTNET_ROOT/$dir" "$sdk/usr/share/dotnet/"
done
if compgen -G "/usr/local/share/ca-certificates/*.crt" >/dev/null; then
  mkdir -p "$sdk/usr/local/share/ca-certificates"
  cp /usr/local/share/ca-certificates/*.crt "$sdk/usr/local/share/ca-certificates/"
  chroot "$sdk" update-ca-certificates >"$work/update-ca-certificates.log" 2>&1 \
    || { cat "$work/update-ca-certificates.log" >&2; die "update-ca-certificates failed in the SDK image"; }
fi
sdk_env=(
  "${dotnet_env[@]}"
  "ENV DOTNET_SDK_VERSION=$sdk_version"
  "ENV DOTNET_GENERATE_ASPNET_CERTIFICATE=false"
  "ENV DOTNET_NOLOGO=true"
  "ENV DOTNET_CLI_TELEMETRY_OPTOUT=true"
  "ENV DOTNET_USE_POLLING_FILE_WATCHER=true"
  "ENV NUGET_XMLDOC_MODE=skip"
)
# A proxy that re-signs TLS usually cannot answer certificate revocation checks either.
[ -n "${NUGET_CERT_REVOCATION_MODE:-}" ] && sdk_env+=("ENV NUGET_CERT_REVOCATION_MODE=$NUGET_CERT_REVOCATION_MODE")
import "$sdk" "$sdk_tag" "${sdk_env[@]}"
rm -rf "$aspnet"

# postgres:15 - Debian's PostgreSQL 15 with an entrypoint like the official image's (see postgres-entrypoint.sh).
pg="$work/postgres"
stage "$postgres_rootfs" "$pg"
# The package's own cluster is not used: the entrypoint initialises PGDATA on first start.
rm -rf "$pg/var/lib/postgresql/15" "$pg/etc/postgresql/15"
sed -ri "s!^#?(listen_addresses)\s*=\s*\S+.*!\1 = '*'!" "$pg/usr/share/postgresql/15/postgresql.conf.sample"
install -m 0755 "$here/postgres-entrypoint.sh" "$pg/usr/local/bin/docker-entrypoint.sh"
mkdir -p "$pg/docker-entrypoint-initdb.d" "$pg/var/lib/postgresql/data" "$pg/var/run/postgresql"
chroot "$pg" chown -R postgres:postgres /var/lib/postgresql /var/run/postgresql
chmod 2777 "$pg/var/run/postgresql"
import "$pg" "$postgres_tag-import" \
  'ENV PATH=/usr/lib/postgresql/15/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
  'ENV PG_MAJOR=15' 'ENV PGDATA=/var/lib/postgresql/data' 'ENV LANG=C.UTF-8' \
  'VOLUME /var/lib/postgresql/data' 'EXPOSE 5432' \
  'ENTRYPOINT ["docker-entrypoint.sh"]' 'CMD ["postgres"]'
# `docker import` takes no STOPSIGNAL; SIGINT is PostgreSQL's fast shutdown (SIGTERM would wait for every client).
previous=$(docker image inspect --format '{{.Id}}' "$postgres_tag" 2>/dev/null || true)
printf 'FROM %s\nSTOPSIGNAL SIGINT\n' "$postgres_tag-import" | docker build -q -t "$postgres_tag" - >"$work/stopsignal.log" 2>&1 \
  || { cat "$work/stopsignal.log" >&2; die "could not set STOPSIGNAL on $postgres_tag"; }
if [ -n "$previous" ]; then docker rmi "$previous" >/dev/null 2>&1 || true; fi
docker rmi "$postgres_tag-import" >/dev/null

log "built $sdk_tag (SDK $sdk_version), $aspnet_tag (runtime $netcore_version, ASP.NET Core $aspnet_version), $postgres_tag"
