#!/usr/bin/env bash
# `make client-tests`: real clients against a real ordercast. With the stack up,
# build ordercast, migrate and seed, serve it on a free port, then run the Node
# tests in clients/test/ (graphql-ws, urql, Apollo Client over WebSocket and
# multipart HTTP, graphql-sse, raw protocol checks, the graphql-http audits of the
# GraphQL over HTTP spec, GraphiQL and the demo storefront in headless Chromium).
# The server is always stopped; exits with node's status.
# ORDERCAST_CLIENT_TESTS picks test files (space-separated; default: all of clients/test/).
#
# Needs Node >= 20 and npm; installs Debian's chromium if /usr/bin/chromium is
# missing. DATABASE_URL and KAFKA_BROKERS pass through (the Makefile exports them).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
root=$PWD

say() { printf '[client-tests] %s\n' "$*"; }

for tool in node npm cargo curl; do
  command -v "$tool" >/dev/null || { say "$tool is required"; exit 2; }
done

cargo build --locked --bin ordercast
# Honours CARGO_TARGET_DIR and cargo config (CI builds outside the checkout).
target_dir=$(cargo metadata --format-version 1 --no-deps --locked |
  node -e 'let s = ""; process.stdin.on("data", (d) => (s += d)).on("end", () => console.log(JSON.parse(s).target_directory))')
bin=$target_dir/debug/ordercast
[[ -x $bin ]] || { say "no binary at $bin"; exit 2; }

chromium=${ORDERCAST_CHROMIUM:-/usr/bin/chromium}
if [[ ! -x $chromium ]]; then
  say "installing Debian's chromium (for the GraphiQL test)"
  sudo=()
  [[ $(id -u) -eq 0 ]] || sudo=(sudo)
  "${sudo[@]}" apt-get update
  DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y chromium
fi
export ORDERCAST_CHROMIUM=$chromium

say "npm ci in clients/"
(cd clients && npm ci --no-audit --no-fund --loglevel=error)

"$bin" migrate
"$bin" seed

artifacts=$root/target/artifacts
mkdir -p "$artifacts"
log=$artifacts/client-tests-ordercast.log

port=$(node -e '
  const server = require("node:net").createServer();
  server.listen(0, "127.0.0.1", () => { console.log(server.address().port); server.close(); });
')
export ORDERCAST_URL=http://127.0.0.1:$port
export ORDERCAST_WS_INIT_TIMEOUT_MS=1000

say "serving on $ORDERCAST_URL (log: ${log#"$root"/})"
ORDERCAST_DEV=1 ORDERCAST_LOG_FORMAT=text "$bin" serve --listen "127.0.0.1:$port" >"$log" 2>&1 &
server=$!
stop_server() {
  if kill -0 "$server" 2>/dev/null; then
    kill "$server" 2>/dev/null || true
    for _ in $(seq 100); do kill -0 "$server" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$server" 2>/dev/null || true
  fi
  wait "$server" 2>/dev/null || true
}
trap stop_server EXIT
trap 'exit 130' INT TERM

ready=
for _ in $(seq 1200); do
  if ! kill -0 "$server" 2>/dev/null; then
    say "ordercast exited before it was ready; its log:"
    tail -n 50 "$log"
    exit 1
  fi
  if curl -fsS -o /dev/null "$ORDERCAST_URL/readyz" 2>/dev/null; then ready=1; break; fi
  sleep 0.1
done
if [[ -z $ready ]]; then
  say "ordercast was not ready within 120 s; its log:"
  tail -n 50 "$log"
  exit 1
fi

ORDERCAST_TOKEN=$("$bin" token --customer alice@example.com)
export ORDERCAST_TOKEN ORDERCAST_EMAIL=alice@example.com

read -r -a tests <<<"${ORDERCAST_CLIENT_TESTS:-clients/test/}"
say "node --test ${tests[*]}"
status=0
node --test "${tests[@]}" || status=$?
say "node --test exited with $status"
exit "$status"
