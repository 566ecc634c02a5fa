#!/usr/bin/env bash
# Property-based API fuzzing with schemathesis against a real control plane:
# every operation of openapi/pgfleet.json, generated inputs, and the check
# that no answer is a server error. Agent-only routes (/api/v1/agents/*) are
# and token revocation (a generated revoke of the admin token would end the
# run's access) are covered by crates/cli/tests/security.rs.
set -euo pipefail
cd "$(dirname "$0")/../.."
bin="${PGFLEET_BIN:-target/debug/pgfleet}"
dir="$(mktemp -d /tmp/pgfleet-schemathesis-XXXXXX)"
chmod 755 "$dir"  # the postgres user runs the servers under it
"$bin" up --data-dir "$dir" --hosts 2 --api 127.0.56.1:7070 --dns 127.0.56.1:8053 --first-host-address 127.0.56.2 >"$dir/up.log" 2>&1 &
up_pid=$!
cleanup() { kill -TERM "$up_pid" 2>/dev/null || true; wait "$up_pid" 2>/dev/null || true; [ -s "$dir/admin.token" ] || cat "$dir/up.log"; rm -rf "$dir"; }
trap cleanup EXIT
for _ in $(seq 1 300); do
  [ -s "$dir/admin.token" ] && [ -s "$dir/ca.crt" ] && break
  sleep 0.1
done
token="$(cat "$dir/admin.token")"
"$(python3 -c "import sysconfig; print(sysconfig.get_path('scripts'))")/st" run openapi/pgfleet.json --url https://127.0.56.1:7070 \
  -H "Authorization: Bearer $token" --tls-verify "$dir/ca.crt" \
  --checks not_a_server_error --exclude-path-regex '^/api/v1/(agents/|tokens/)' \
  -n 20 --max-time 90 --no-color --seed 1
status=$?
if grep -q "panicked" "$dir/up.log"; then
  echo "the control plane panicked during the run:"; grep -A3 panicked "$dir/up.log"; exit 1
fi
exit $status
