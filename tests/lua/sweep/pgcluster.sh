#!/usr/bin/env bash
# A throw-away PostgreSQL cluster for the sweep tests: unix socket only, in a temporary directory.
#   pgcluster.sh start <dir>   -> prints the store URL (without #sweep); exit 77 when PostgreSQL's
#                                 server binaries are not installed (apt-get install postgresql)
#   pgcluster.sh stop <dir>    -> stops the server and removes <dir>
# The server refuses to run as root: as root it runs as the unprivileged user 'nobody'.
set -euo pipefail
cmd=$1 dir=$2
bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1 || true)
if [ -z "$bin" ] || [ ! -x "$bin/initdb" ]; then
  echo "PostgreSQL server binaries not found (/usr/lib/postgresql/*/bin/initdb): apt-get install -y postgresql" >&2
  exit 77
fi
as=()
if [ "$(id -u)" -eq 0 ]; then as=(runuser -u nobody --); fi
case $cmd in
  start)
    mkdir -p "$dir/sock"
    [ ${#as[@]} -gt 0 ] && chown -R nobody "$dir"
    "${as[@]}" "$bin/initdb" -D "$dir/data" -U fvl -A trust -E UTF8 --no-locale >"$dir/initdb.log" 2>&1 ||
      { cat "$dir/initdb.log" >&2; exit 1; }
    # durability is not what these tests check: no fsync, small shared memory
    "${as[@]}" "$bin/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 30 \
      -o "-k $dir/sock -c listen_addresses='' -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c shared_buffers=16MB -c max_connections=60" \
      start >"$dir/pg_ctl.log" 2>&1 || { cat "$dir/pg_ctl.log" "$dir/server.log" >&2; exit 1; }
    echo "postgresql://fvl@/postgres?host=$dir/sock"
    ;;
  stop)
    [ -d "$dir/data" ] && "${as[@]}" "$bin/pg_ctl" -D "$dir/data" -m immediate -w stop >/dev/null 2>&1 || true
    rm -rf "$dir"
    ;;
  *) echo "usage: pgcluster.sh start|stop <dir>" >&2; exit 2 ;;
esac
