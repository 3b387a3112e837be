# Sourced by .ci/run: exports LPT_TEST_PG_URL pointing at a reachable PostgreSQL server.
# Uses the one on 127.0.0.1:5432 (database `test`, trust auth) when it answers, else installs
# and starts a local one from Debian's packages.
LPT_TEST_PG_URL=${LPT_TEST_PG_URL:-postgresql+psycopg://postgres@127.0.0.1:5432/test}
if ! pg_isready -q -h 127.0.0.1 -p 5432 2>/dev/null; then
  if [ "$(id -u)" = 0 ]; then
    command -v pg_ctlcluster >/dev/null 2>&1 || { apt-get install -y -q postgresql >/dev/null 2>&1 || { apt-get update -q >/dev/null && apt-get install -y -q postgresql >/dev/null; }; }
    ver=$(ls /usr/lib/postgresql | sort -V | tail -n1)
    pg_ctlcluster "$ver" main start 2>/dev/null || service postgresql start
    for _ in $(seq 30); do pg_isready -q -h 127.0.0.1 -p 5432 && break; sleep 1; done
    su postgres -c "psql -qc \"ALTER USER postgres PASSWORD 'postgres'\"" >/dev/null
    su postgres -c "createdb test" 2>/dev/null || true
    LPT_TEST_PG_URL=postgresql+psycopg://postgres:postgres@127.0.0.1:5432/test
  else
    echo "ensure_postgres: no server on 127.0.0.1:5432 and not root; PostgreSQL tests will skip" >&2
  fi
fi
export LPT_TEST_PG_URL
