#!/usr/bin/env bash
# Starts the PostgreSQL 15 server the tests use. As root: Debian's cluster (initdb refuses root),
# with a password-login superuser for the tests. Not root: nothing to do here, the test fixture
# makes a throwaway cluster in a temp dir. CIFAR_OPS_TEST_DATABASE_URL skips all of it.
set -euo pipefail
[ -n "${CIFAR_OPS_TEST_DATABASE_URL:-}" ] && exit 0
[ "$(id -u)" -eq 0 ] || exit 0
pg_ctlcluster 15 main start 2>/dev/null || pg_ctlcluster 15 main status >/dev/null
for _ in $(seq 1 30); do
  runuser -u postgres -- pg_isready -q && break
  sleep 1
done
runuser -u postgres -- psql -q -v ON_ERROR_STOP=1 <<'SQL'
DO $$
BEGIN
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'cifar_ops_test') THEN
    CREATE ROLE cifar_ops_test LOGIN SUPERUSER PASSWORD 'cifar_ops_test';
  END IF;
END $$;
SQL
