#!/usr/bin/env bash
# A private Docker daemon for the compose smoke test and the offline image build, so neither touches a
# daemon someone else runs: its own socket, pidfile, data-root and exec-root, no default bridge (no
# docker0 to clash over) and no iptables rules (image builds use the host network; compose's own
# network needs none for traffic between its containers).
#
#   deploy/dockerd.sh start    start it unless it already runs; prints the DOCKER_HOST to use
#   deploy/dockerd.sh stop     stop it by the PID in its pidfile (waits for it to exit)
#   deploy/dockerd.sh status   exit 0 when it answers
#   deploy/dockerd.sh host     prints its DOCKER_HOST (unix://<socket>)
#
# Environment (defaults in brackets): TWOPC_DOCKERD_SOCKET [/run/twopc-dockerd.sock],
# TWOPC_DOCKERD_PIDFILE [/run/twopc-dockerd.pid], TWOPC_DOCKERD_DATA [/var/lib/twopc-dockerd] (images and
# the build cache live here, so a second run is warm), TWOPC_DOCKERD_STORAGE_DRIVER [overlay2 where the
# kernel has overlayfs, else vfs: vfs copies the whole image for every layer, several times slower].
set -euo pipefail

socket=${TWOPC_DOCKERD_SOCKET:-/run/twopc-dockerd.sock}
pidfile=${TWOPC_DOCKERD_PIDFILE:-/run/twopc-dockerd.pid}
data=${TWOPC_DOCKERD_DATA:-/var/lib/twopc-dockerd}
if grep -qw overlay /proc/filesystems 2>/dev/null; then default_driver=overlay2; else default_driver=vfs; fi
driver=${TWOPC_DOCKERD_STORAGE_DRIVER:-$default_driver}
exec_root=${TWOPC_DOCKERD_EXEC_ROOT:-/run/twopc-dockerd}
log=${TWOPC_DOCKERD_LOG:-$data.log}
host="unix://$socket"

running_pid() {
  [ -s "$pidfile" ] || return 1
  local pid
  pid=$(cat "$pidfile")
  kill -0 "$pid" 2>/dev/null || return 1
  echo "$pid"
}

answers() { DOCKER_HOST=$host docker version --format '{{.Server.Version}}' >/dev/null 2>&1; }

case "${1:-}" in
  start)
    if running_pid >/dev/null && answers; then
      echo "$host"
      exit 0
    fi
    command -v dockerd >/dev/null || { echo "error: dockerd not found (Debian: apt-get install docker.io)" >&2; exit 1; }
    mkdir -p "$data" "$exec_root"
    dockerd --host "$host" --pidfile "$pidfile" --data-root "$data" --exec-root "$exec_root" \
      --storage-driver "$driver" --iptables=false --ip-masq=false --bridge=none >"$log" 2>&1 &
    for _ in $(seq 1 60); do
      if answers; then
        echo "$host"
        exit 0
      fi
      sleep 1
    done
    echo "error: dockerd did not answer on $host within 60 s; its log ($log):" >&2
    tail -20 "$log" >&2
    exit 1
    ;;
  stop)
    if pid=$(running_pid); then
      kill "$pid"
      for _ in $(seq 1 60); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 1
      done
      if kill -0 "$pid" 2>/dev/null; then
        echo "error: dockerd ($pid) did not stop within 60 s" >&2
        exit 1
      fi
    fi
    # dockerd leaves its data-root bind mount and network namespace mounts behind; nothing uses them once it has stopped.
    for root in "$exec_root" "$data"; do
      awk -v dir="$root" '$2 == dir || index($2, dir "/") == 1 { print $2 }' /proc/mounts | sort -r | while read -r mount; do
        umount -l "$mount" || true
      done
    done
    ;;
  status)
    running_pid >/dev/null && answers
    ;;
  host)
    echo "$host"
    ;;
  *)
    echo "usage: $0 start|stop|status|host" >&2
    exit 2
    ;;
esac
