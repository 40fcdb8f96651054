# The two commands that matter (see README.md):
#   make run    build the default mapping components and run the host on them
#   make test   build the components and run every test, then the lint checks
#
# Other targets: make guests | lint | fmt

CARGO ?= cargo
# A local development token for the admin API; set your own for anything else.
COSELL_ADMIN_TOKEN ?= local-dev-token
export COSELL_ADMIN_TOKEN

.PHONY: run test guests lint fmt unit

guests:
	bash guest-mappings/build.sh --release

run: guests
	@echo "admin API token: $$COSELL_ADMIN_TOKEN (set COSELL_ADMIN_TOKEN to change it)"
	$(CARGO) run -p cosell -- serve --config cosell.example.toml

# nextest runs each test in its own process, in parallel; cargo test is the fallback.
test: guests
	@if $(CARGO) nextest --version >/dev/null 2>&1; then \
		$(CARGO) nextest run --workspace --no-fail-fast; \
	else \
		$(CARGO) test --workspace --no-fail-fast; \
	fi
	$(MAKE) lint

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

fmt:
	$(CARGO) fmt --all
