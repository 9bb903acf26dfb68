# Every command a sagaflow user runs. `make help` lists them.
CARGO ?= cargo
ARGS ?=
SAGAFLOW_CACHE ?= $(HOME)/.cache/sagaflow
# cargo-lambda (from PyPI, installed by infra/tools.sh) runs the built bootstrap under
# its Lambda Runtime API emulator in the runtime proof (functions/lambdas/tests/runtime_api.rs).
CARGO_LAMBDA = $(SAGAFLOW_CACHE)/infra-venv/bin/cargo-lambda

# Runs a command with the local servers: uses those of 'make up' if they run, otherwise starts
# them for this command only and stops them after, whatever the command's outcome.
with_servers = if dev/scripts/servers.sh running; then started=0; else dev/scripts/servers.sh up || exit 1; started=1; fi; \
	set -a; . ./.run/env; set +a; $(1); status=$$?; \
	if [ $$started = 1 ]; then dev/scripts/servers.sh down; fi; exit $$status

.PHONY: help run check test test-unit test-e2e test-demo chaos test-chaos bench fuzz run-local lint fmt check-core-purity up down clean package deploy lint-infra

help: ## list the commands
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed -E 's/:.*## /\t/' | column -t -s "$$(printf '\t')"

run: ## run the whole order flow in one process on embedded defaults (flags: make run ARGS="--help")
	$(CARGO) run --quiet -p sagaflow-demo -- $(ARGS)

check: lint ## fast, no servers: fmt, clippy and every test that needs no server (the server-bound ones are listed as ignored, with how to run them)
	$(CARGO) test --workspace

test: lint lint-infra check-core-purity test-unit test-demo test-chaos ## everything CI runs: lint, infra checks, core purity, all tests, the demo's and a short chaos run's invariants

# The tests that need the local servers are #[ignore]d with that reason, so a plain `cargo test`
# passes anywhere; here they run too.
test-unit: ## every crate's tests, the server-bound, end-to-end, runtime-proof and browser ones included, against the local servers (dynoxide, tansu) and headless Chromium
	@infra/tools.sh
	@dev/scripts/browser.sh
	@$(call with_servers,SAGAFLOW_CARGO_LAMBDA=$(CARGO_LAMBDA) $(CARGO) test --workspace -- --include-ignored)

test-e2e: ## only the end-to-end tests: the whole flow through the functions' local triggers on dynoxide and tansu
	@$(call with_servers,$(CARGO) test -p sagaflow-e2e -- --include-ignored)

chaos: ## orders through the functions on the local servers with seeded faults; prints each invariant (release build; flags: make chaos ARGS="--help")
	@$(call with_servers,$(CARGO) run --release --quiet -p sagaflow-chaos -- $(ARGS))

# A 10 s step timeout: a silenced step is sent twice (10 s, then 20 s) before its saga compensates,
# which the default 20 s would make a minute; the faults still hit every path.
test-chaos: ## a short seeded chaos run (100 orders, every fault on, one DynamoDB outage) whose invariants must hold
	@$(call with_servers,$(CARGO) run --quiet -p sagaflow-chaos -- --orders 100 --seed 11 --silent 0.06 --outages 1 --outage-secs 5 --step-timeout-ms 10000)

# The bench measures release builds: its own binary and every function's bootstrap (for init).
# The functions are built on their own, as `make package` builds them: built with the bench,
# cargo would unify their dependencies' features with the bench's (dynamo-es, cqrs-es) and
# measure bigger binaries than the ones deployed.
bench: ## sagaflow beside cqrs-es and dynamo-es, a Kafka batch, function init, end to end, cost per order; see BENCHMARKS.md (quick: make bench ARGS=--quick)
	@$(CARGO) build --release --quiet -p sagaflow-lambdas
	@$(CARGO) build --release --quiet -p sagaflow-bench
	@$(call with_servers,target/release/sagaflow-bench $(ARGS))

FUZZ_SECS ?= 120
CARGO_FUZZ = $(SAGAFLOW_CACHE)/cargo-fuzz/bin/cargo-fuzz
fuzz: ## fuzz the Kafka record decoder and the event upcasters for FUZZ_SECS each (needs the nightly toolchain)
	@[ -x $(CARGO_FUZZ) ] || $(CARGO) install cargo-fuzz --locked --root $(SAGAFLOW_CACHE)/cargo-fuzz
	@for target in kafka_batch event_upcast; do \
		echo "fuzzing $$target for $(FUZZ_SECS) s"; \
		PATH=$(SAGAFLOW_CACHE)/cargo-fuzz/bin:$$PATH cargo +nightly fuzz run --fuzz-dir dev/fuzz --target-dir target/fuzz $$target -- -max_total_time=$(FUZZ_SECS) || exit 1; \
	done

run-local: ## the order flow through the Lambda handlers and local triggers on the servers of 'make up' (uses running servers, or starts and stops its own)
	@$(call with_servers,$(CARGO) run --quiet -p sagaflow-local-trigger --bin local-demo -- $(ARGS))

up: ## install (once) and start the local servers on 127.0.0.1; writes .run/env
	dev/scripts/servers.sh up
	@echo "servers up: 'set -a; . .run/env; set +a' points the AWS SDK at them"

down: ## stop the servers that 'make up' started
	dev/scripts/servers.sh down

test-demo: ## a larger seeded demo run that must hold every invariant (exit 1 otherwise)
	@mkdir -p target
	@$(CARGO) run --quiet -p sagaflow-demo -- --orders 240 --seed 7 --lost-commits 25 --rows 0 > target/demo-check.txt \
		|| { cat target/demo-check.txt; echo "make run broke an invariant (output above)"; exit 1; }
	@grep -A20 '^Invariants' target/demo-check.txt

lint: ## formatting and clippy, warnings are errors
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

fmt: ## format the code
	$(CARGO) fmt --all

CORE_PACKAGES = sagaflow-eventsourcing sagaflow-saga sagaflow-orders
# I/O crates, and the adapter crates above the core: none may be a normal dependency of the core.
IMPURE = ^(aws-|rdkafka|lambda_runtime|hyper|reqwest|tokio |sagaflow-(records|kafka|dynamodb|handlers|lambdas|lambda-kafka|embedded|local-trigger) )
check-core-purity: ## the core packages depend on no AWS, Kafka, Lambda, HTTP or async runtime crate, nor on any adapter
	@for package in $(CORE_PACKAGES); do \
		if $(CARGO) tree -p $$package -e normal --prefix none | grep -E '$(IMPURE)'; then \
			echo "$$package must not depend on I/O or adapter crates (above)"; exit 1; \
		fi; \
	done; echo "$(CORE_PACKAGES): no aws-*, rdkafka, lambda_runtime, hyper, reqwest, tokio or adapter crate in their dependencies"
	@if $(CARGO) tree -p sagaflow-lambda-kafka -e normal --prefix none | tail -n +2 | grep -E '^sagaflow-'; then \
		echo "sagaflow-lambda-kafka must stay free of sagaflow crates (above)"; exit 1; \
	else echo "sagaflow-lambda-kafka: no sagaflow crate in its dependencies"; fi

clean: ## remove build output
	$(CARGO) clean

package: ## build every function for Lambda (arm64 zips in target/lambda/<bin>/bootstrap.zip) and print their sizes
	infra/package.sh

deploy: package ## deploy to AWS with SAM: guided the first time (saves infra/samconfig.toml), then with the saved answers
	@if [ -f infra/samconfig.toml ]; then \
		infra/tools.sh run sam deploy --template-file infra/template.yaml --config-file infra/samconfig.toml; \
	else \
		infra/tools.sh run sam deploy --guided --template-file infra/template.yaml --config-file infra/samconfig.toml \
			--capabilities CAPABILITY_IAM; \
	fi

lint-infra: ## offline checks of infra/template.yaml: sam validate, cfn-lint (+ serverless rules), checkov
	infra/lint.sh
