#!/usr/bin/env bash
# Entrypoint of the offline postgres:15 image (build-base-images.sh), compatible with the official image for
# what docker-compose.yml uses: on the first start with an empty PGDATA it runs initdb with POSTGRES_USER
# (default postgres) and POSTGRES_PASSWORD (required), creates POSTGRES_DB (default: the user's name), runs
# /docker-entrypoint-initdb.d/*.sh and *.sql against it, and allows password (scram-sha-256) logins from
# any address. Then it runs the command (default `postgres`, extra `-c` settings allowed) as user postgres.
set -Eeuo pipefail

if [ "${1:0:1}" = '-' ]; then
  set -- postgres "$@"
fi

if [ "$1" != postgres ]; then
  exec "$@"
fi

if [ "$(id -u)" = 0 ]; then
  mkdir -p "$PGDATA" /var/run/postgresql
  chown postgres:postgres "$PGDATA" /var/run/postgresql
  chmod 700 "$PGDATA"
  chmod 2777 /var/run/postgresql
  exec setpriv --reuid=postgres --regid=postgres --init-groups "$0" "$@"
fi

if [ ! -s "$PGDATA/PG_VERSION" ]; then
  if [ -z "${POSTGRES_PASSWORD:-}" ]; then
    echo "error: POSTGRES_PASSWORD is not set; the database would be initialised without a superuser password" >&2
    exit 1
  fi
  user=${POSTGRES_USER:-postgres}
  database=${POSTGRES_DB:-$user}
  pwfile=$(mktemp)
  printf '%s\n' "$POSTGRES_PASSWORD" >"$pwfile"
  # POSTGRES_INITDB_ARGS is split into words on purpose, as in the official image.
  # shellcheck disable=SC2086
  initdb --username="$user" --pwfile="$pwfile" --auth-local=trust --auth-host=scram-sha-256 \
    --encoding=UTF8 --locale=C.UTF-8 -D "$PGDATA" ${POSTGRES_INITDB_ARGS:-} >/dev/null
  rm -f "$pwfile"
  printf '\nhost all all all scram-sha-256\n' >>"$PGDATA/pg_hba.conf"

  # A socket-only server while the init scripts run, so no client connects to a half-initialised database.
  pg_ctl -D "$PGDATA" -o "-c listen_addresses=''" -w start >/dev/null
  psql=(psql -v ON_ERROR_STOP=1 --username "$user" --no-password --no-psqlrc)
  if [ "$database" != postgres ]; then
    # psql quotes the name (:"db") only in scripts it reads, not in -c commands.
    echo 'CREATE DATABASE :"db"' | "${psql[@]}" --dbname postgres --set db="$database" >/dev/null
  fi
  if [ -d /docker-entrypoint-initdb.d ] && { [ ! -r /docker-entrypoint-initdb.d ] || [ ! -x /docker-entrypoint-initdb.d ]; }; then
    # The glob below would silently match nothing: the roles or tables those scripts make would be missing.
    echo "error: /docker-entrypoint-initdb.d is not readable by user postgres; its init scripts cannot run" >&2
    exit 1
  fi
  export PGUSER=$user PGDATABASE=$database
  for f in /docker-entrypoint-initdb.d/*; do
    case "$f" in
      *.sh)
        echo "$0: running $f"
        # shellcheck disable=SC1090 # init scripts are the user's, sourced as in the official image
        if [ -x "$f" ]; then "$f"; else . "$f"; fi
        ;;
      *.sql)
        echo "$0: running $f"
        "${psql[@]}" --dbname "$database" -f "$f" >/dev/null
        ;;
      *.sql.gz)
        echo "$0: running $f"
        gunzip -c "$f" | "${psql[@]}" --dbname "$database" >/dev/null
        ;;
      *"/docker-entrypoint-initdb.d/*") ;;
      *) echo "$0: ignoring $f" ;;
    esac
  done
  unset PGUSER PGDATABASE
  pg_ctl -D "$PGDATA" -m fast -w stop >/dev/null
  echo "PostgreSQL initialised in $PGDATA; ready for start up"
fi

exec "$@"
