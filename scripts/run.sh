#!/usr/bin/env bash
# `make run`: with the stack up, build ordercast, migrate, seed the demo data,
# print where to go and a token to use, then serve in the foreground.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

cargo build --release --locked --bin ordercast
bin=target/release/ordercast
listen="${ORDERCAST_LISTEN:-127.0.0.1:8080}"

"$bin" migrate
"$bin" seed
token="$("$bin" token --customer alice@example.com --ttl 86400)"

cat <<INFO

  ordercast is starting on http://$listen
    GraphiQL        http://$listen/
    GraphQL (HTTP)  http://$listen/graphql
    health          http://$listen/healthz   http://$listen/readyz

  A development token for alice@example.com (valid 24 h); in GraphiQL's
  headers editor put:  {"Authorization": "Bearer $token"}

    export TOKEN=$token
    curl -s http://$listen/graphql -H "Authorization: Bearer \$TOKEN" \\
         -H 'content-type: application/json' -d '{"query":"{ me { email } }"}'

  Another customer: $bin token --customer bob@example.com
  Stop with Ctrl-C; stop the stack with: make stack-down

INFO

exec "$bin" serve --listen "$listen"
