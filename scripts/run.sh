#!/usr/bin/env bash
# `make run`: with the stack up, build ordercast, migrate, seed the demo data,
# print where to go and a token to use, then serve in the foreground.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

cargo build --release --locked --bin ordercast
bin=target/release/ordercast
listen="${ORDERCAST_LISTEN:-127.0.0.1:8080}"

# A development run: HS256 tokens from the development secret are accepted. With
# an identity provider configured (ORDERCAST_JWT_JWKS_URL or
# ORDERCAST_JWT_PUBLIC_KEY_FILE) its key wins and no development token is minted.
export ORDERCAST_DEV=1

"$bin" migrate
"$bin" seed

cat <<INFO

  ordercast is starting on http://$listen
    GraphiQL        http://$listen/
    demo storefront http://$listen/demo
    GraphQL (HTTP)  http://$listen/graphql
    health          http://$listen/healthz   http://$listen/readyz
INFO

if [[ -z ${ORDERCAST_JWT_JWKS_URL:-}${ORDERCAST_JWT_PUBLIC_KEY_FILE:-} ]]; then
  token="$("$bin" token --customer alice@example.com --ttl 86400)"
  cat <<INFO

  GraphiQL and the demo storefront, signed in as alice@example.com (a development token, valid 24 h):
    http://$listen/#token=$token
    http://$listen/demo#token=$token   (open it twice: a change on one appears on the other)

    export TOKEN=$token
    curl -s http://$listen/graphql -H "Authorization: Bearer \$TOKEN" \\
         -H 'content-type: application/json' -d '{"query":"{ me { email } }"}'

  Another customer: $bin token --customer bob@example.com
INFO
else
  printf '\n  Tokens come from the identity provider configured in ORDERCAST_JWT_*: sign in there.\n'
fi

cat <<INFO
  Stop with Ctrl-C; stop the stack with: make stack-down

INFO

exec "$bin" serve --listen "$listen"
