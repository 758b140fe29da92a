#!/usr/bin/env bash
# Installs (if missing) and starts PostgreSQL 15, creates the test database and
# prints the line that exports POLICY_ENGINE_TEST_PG for the policy-journal
# tests. Run as root (CI, containers):
#   eval "$(journal/tests/pg-setup.sh | tail -n1)"
set -euo pipefail

DB="${POLICY_ENGINE_TEST_DB:-policy_engine_test}"
ROLE="${POLICY_ENGINE_TEST_ROLE:-policy_engine}"
PASSWORD="${POLICY_ENGINE_TEST_PASSWORD:-policy_engine}"
SOCKET_DIR=/var/run/postgresql

if ! command -v pg_ctlcluster >/dev/null 2>&1 || ! ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1; then
    echo "pg-setup: installing postgresql" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >&2
    apt-get install -y -qq postgresql >&2
fi

# The newest installed cluster (15 here; any >= 11 works).
read -r VERSION CLUSTER _ < <(pg_lsclusters --no-header | sort -k1,1nr | head -n1)
if [ -z "${VERSION:-}" ]; then
    VERSION="$(ls /usr/lib/postgresql | sort -n | tail -n1)"
    CLUSTER=main
    pg_createcluster "$VERSION" "$CLUSTER" >&2
fi
if ! pg_lsclusters --no-header | awk -v v="$VERSION" -v c="$CLUSTER" '$1==v && $2==c {print $4}' | grep -q online; then
    echo "pg-setup: starting cluster $VERSION/$CLUSTER" >&2
    pg_ctlcluster "$VERSION" "$CLUSTER" start >&2
fi

as_pg() { runuser -u postgres -- "$@"; }
PORT="$(pg_lsclusters --no-header | awk -v v="$VERSION" -v c="$CLUSTER" '$1==v && $2==c {print $3}')"
PORT="${PORT:-5432}"

for _ in $(seq 1 50); do
    if as_pg psql -h "$SOCKET_DIR" -p "$PORT" -qAtc 'select 1' >/dev/null 2>&1; then break; fi
    sleep 0.2
done
# A password role over TCP, so the tests work whatever OS user runs them
# (peer authentication on the socket would tie them to `postgres`).
if ! as_pg psql -h "$SOCKET_DIR" -p "$PORT" -qAtc "select 1 from pg_roles where rolname = '$ROLE'" | grep -q 1; then
    as_pg psql -h "$SOCKET_DIR" -p "$PORT" -qc "create role \"$ROLE\" login password '$PASSWORD'" >&2
fi
if ! as_pg psql -h "$SOCKET_DIR" -p "$PORT" -qAtc "select 1 from pg_database where datname = '$DB'" | grep -q 1; then
    as_pg createdb -h "$SOCKET_DIR" -p "$PORT" -O "$ROLE" "$DB" >&2
fi
# Tests create a schema each: the role owns the database.
as_pg psql -h "$SOCKET_DIR" -p "$PORT" -qc "alter database \"$DB\" owner to \"$ROLE\"" >&2

echo "export POLICY_ENGINE_TEST_PG='host=127.0.0.1 port=$PORT user=$ROLE password=$PASSWORD dbname=$DB'"
