# The developer's entry points. `make run` and `make test` are the two set-up commands.
SHELL := /bin/bash
.DEFAULT_GOAL := help
CARGO ?= cargo

# Ports of the local stack; override any of them in the environment. The app,
# the tests and the stack script all derive their endpoints from these.
# (ORDERCAST_KAFKA_* is the binary's: librdkafka properties.)
ORDERCAST_STACK_PG_PORT ?= 55432
ORDERCAST_STACK_KAFKA_PORT ?= 19092
ORDERCAST_STACK_KAFKA_SASL_PORT ?= 19094
ORDERCAST_STACK_KAFKA_CONTROLLER_PORT ?= 19093
ORDERCAST_STACK_CONNECT_PORT ?= 18083
DATABASE_URL ?= postgres://ordercast:ordercast@127.0.0.1:$(ORDERCAST_STACK_PG_PORT)/ordercast
KAFKA_BROKERS ?= 127.0.0.1:$(ORDERCAST_STACK_KAFKA_PORT)
export ORDERCAST_STACK_PG_PORT ORDERCAST_STACK_KAFKA_PORT ORDERCAST_STACK_KAFKA_SASL_PORT
export ORDERCAST_STACK_KAFKA_CONTROLLER_PORT ORDERCAST_STACK_CONNECT_PORT
export DATABASE_URL KAFKA_BROKERS

.PHONY: help stack stack-down stack-status stack-reset run test chaos lint playground demo client-tests bench

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-13s %s\n", $$1, $$2}'

stack: ## Install (if missing) and start Postgres, Kafka and Kafka Connect with Debezium
	@stack/stack.sh up

stack-down: ## Stop every process the stack started
	@stack/stack.sh down

stack-status: ## Show what runs, on which port, with how much memory
	@stack/stack.sh status

stack-reset: ## Stop the stack and delete its data (downloads are kept)
	@stack/stack.sh reset

run: stack ## Start the stack, migrate, seed, and serve ordercast
	@scripts/run.sh

test: stack ## Start the stack and run every test: Rust, then Node clients and GraphiQL in Chromium
	$(CARGO) test --workspace --locked
	@scripts/client-tests.sh

chaos: stack ## Fault suite: crashes Kafka, Connect, Postgres, Debezium's walsender and an instance under load, then repairs them
	$(CARGO) test --locked --test chaos -- --ignored --nocapture --test-threads=1

lint: ## rustfmt and clippy, as CI runs them
	@stack/stack.sh prerequisites
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets --locked -- -D warnings


playground: ## Rebuild the offline GraphiQL bundle in src/playground/assets/ (needs Node and npm)
	cd web/graphiql && npm ci --no-audit --no-fund && node build.mjs

demo: ## Rebuild the demo storefront (/demo) in src/demo/assets/ (needs Node and npm)
	cd web/demo && npm ci --no-audit --no-fund && node build.mjs

client-tests: stack ## Node clients (graphql-ws, urql, raw protocol, GraphiQL in Chromium) against a fresh ordercast
	@scripts/client-tests.sh

RELEASE_DIR = $(or $(CARGO_TARGET_DIR),target)/release
bench: stack ## Benchmarks on the real stack, results in target/bench/ (BENCH_ARGS=--quick: a few seconds each); see BENCHMARKS.md
	$(CARGO) build --release --locked -p ordercast -p ordercast-bench
	$(RELEASE_DIR)/ordercast migrate
	$(RELEASE_DIR)/ordercast seed
	$(RELEASE_DIR)/ordercast-bench --server-bin $(RELEASE_DIR)/ordercast $(BENCH_ARGS)
