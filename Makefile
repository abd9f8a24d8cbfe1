# The developer's entry points. `make run` and `make test` are the two set-up commands.
SHELL := /bin/bash
.DEFAULT_GOAL := help
CARGO ?= cargo

.PHONY: help stack stack-down stack-status stack-reset run test lint

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

test: stack ## Start the stack and run every test against it
	$(CARGO) test --workspace --locked

lint: ## rustfmt and clippy, as CI runs them
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets --locked -- -D warnings
