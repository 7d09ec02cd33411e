# wasmkube — run `make help` for the targets.

GO        ?= go
PROFILE   ?= demo
BIN       ?= bin/wasmkube
PLATFORMS ?= linux/amd64 linux/arm64 darwin/amd64 darwin/arm64

VERSION      ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo devel)
KUBE_VERSION := $(shell $(GO) list -m -f '{{.Version}}' k8s.io/kubernetes)
KUBE_MAJOR   := $(word 1,$(subst ., ,$(patsubst v%,%,$(KUBE_VERSION))))
KUBE_MINOR   := $(word 2,$(subst ., ,$(patsubst v%,%,$(KUBE_VERSION))))
BUILD_DATE   := $(shell date -u +%Y-%m-%dT%H:%M:%SZ)
KV           := k8s.io/component-base/version
LDFLAGS      := -X github.com/wasmkube/wasmkube.version=$(VERSION) \
                -X $(KV).gitVersion=$(KUBE_VERSION) -X $(KV).gitMajor=$(KUBE_MAJOR) -X $(KV).gitMinor=$(KUBE_MINOR) \
                -X $(KV).gitTreeState=clean -X $(KV).buildDate=$(BUILD_DATE)

.PHONY: help run build lint test fuzz reliability bench bench-compare bench-up bench-wasm bench-wasm-compare bench-admission bench-admission-compare bench-kubewarden cross clean hostile examples-rust

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*## "}; {printf "  %-16s %s\n", $$1, $$2}'

run: ## start the $(PROFILE) profile (Ctrl-C stops it)
	$(GO) run ./cmd/wasmkube up --profile $(PROFILE)

# CGO_ENABLED=0: with cgo, Go's linker keeps every exported method once the `plugin` package is
# linked (kubectl's kustomize links it): 43 MB more binary, ~9 MB more RSS (docs/rationale.md,
# "The binary"). `go run` and the tests keep the default, so that they share one build cache.
build: ## build $(BIN) with the version stamped (no cgo: the smaller binary)
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags "$(LDFLAGS)" -o $(BIN) ./cmd/wasmkube

# Every package whose tests can afford the race detector: all but those that link kube-apiserver
# (the root package, apiserver and the CLI), whose race build and start exceed CI's budget.
RACE_PACKAGES := ./wasm/... ./profiles/... ./etcd/... ./apiserver/pki/... ./apiserver/kubeconfig/... ./examples/... ./internal/... ./datadir/...

# The guest SDK is a Go module of its own (wasm/guest/go.mod: module authors depend on it without
# the server's dependencies), so ./... from here does not reach it: its tests run in its
# directory, with the race detector (they are small).
SDK := wasm/guest

# staticcheck at a pinned version, run with `go run PKG@VERSION`: it needs nothing but Go and the
# module proxy (its checksums are verified against sum.golang.org) and stays out of go.mod. A
# `tool` line there would put staticcheck's requirements (golang.org/x/tools, BurntSushi/toml, …)
# into the module graph of every program that imports this library, and minimal version selection
# could move the versions the server builds with. A separate tools module would work too, at the
# cost of a third go.mod to keep tidy. Its default checks all fit this code: no staticcheck.conf.
STATICCHECK ?= $(GO) run honnef.co/go/tools/cmd/staticcheck@v0.8.2
# The SDK is built for GOOS=wasip1 (its exports and host imports exist only there) and tested
# natively: vet and staticcheck look at both builds (staticcheck merges them with -matrix).
SDK_BUILDS := 'native:\nwasip1: GOOS=wasip1 GOARCH=wasm\n'

lint: ## gofmt -l, go vet and staticcheck over both modules (the server's and the SDK's)
	@unformatted=$$(gofmt -l .); if [ -n "$$unformatted" ]; then echo "gofmt -l: not formatted (run gofmt -w):"; echo "$$unformatted"; exit 1; fi
	$(GO) vet ./...
	$(GO) vet -tags nokubectl ./cmd/...
	cd $(SDK) && $(GO) vet ./... && GOOS=wasip1 GOARCH=wasm $(GO) vet ./...
	$(STATICCHECK) ./...
	cd $(SDK) && printf $(SDK_BUILDS) | $(STATICCHECK) -matrix ./...

test: lint ## run every test (the command CI runs; lint first)
	$(GO) test -timeout 20m ./...
	$(GO) test -race -timeout 10m $(RACE_PACKAGES)
	cd $(SDK) && $(GO) test -race -timeout 10m ./...

FUZZTIME         ?= 30s
FUZZMINIMIZETIME ?= 10s
FUZZ             ?= .

fuzz: ## run each fuzz target (those matching $(FUZZ)) for $(FUZZTIME); seeds run in `make test` (docs/reliability.md)
	@set -e; for f in $$(grep -rlE --include='*_test.go' --exclude-dir=.git '^func Fuzz[A-Za-z0-9_]*\(f \*testing\.F\)' .); do \
	  for name in $$(sed -nE 's/^func (Fuzz[A-Za-z0-9_]*)\(f \*testing\.F\).*/\1/p' $$f); do \
	    echo "$$name" | grep -qE '$(FUZZ)' || continue; \
	    echo "== $$name ($$(dirname $$f)) for $(FUZZTIME)"; \
	    (cd $$(dirname $$f) && $(GO) test . -run '^$$' -fuzz "^$$name\$$" -fuzztime $(FUZZTIME) -fuzzminimizetime $(FUZZMINIMIZETIME)) || exit 1; \
	  done; \
	done

reliability: ## the whole reliability suite at full size: hostile modules, load and faults, durability, fuzzing (docs/reliability.md)
	$(GO) test ./wasm -run '^TestHostileModules$$' -v -count 1
	WASMKUBE_LOAD_REQUESTS=10000 $(GO) test . -run '^TestCluster$$' -v -count 1 -timeout 30m
	WASMKUBE_RELIABILITY=1 $(GO) test ./cmd/wasmkube/cli -run '^TestDurability$$' -v -count 1 -timeout 30m
	$(MAKE) fuzz FUZZTIME=60s

bench: ## every comparison of issue 11 in one run (start, admission, authn/authz, module calls, binary); regenerates docs/benchmarks.md
	$(GO) run ./internal/cmd/wasmkube-bench -o docs/benchmarks.md

bench-compare: ## `make bench`'s start and admission comparisons for BASE (a git revision) and this tree, interleaved, into docs/benchmarks-before-after.md
	$(GO) run ./internal/cmd/wasmkube-bench -base $(BASE) -only start,admission -o docs/benchmarks-before-after.md

bench-up: ## start→ready, RSS at ready and shutdown of this tree alone (make bench compares)
	$(GO) test ./cmd/wasmkube/cli -run '^$$' -bench BenchmarkUp -benchtime 5x -timeout 30m

bench-wasm: ## module call latency, pooled vs fresh, metered vs not (in make bench's report)
	$(GO) test ./wasm/envelope -run '^$$' -bench BenchmarkAdmitMagicValidate -benchtime 2000x

BASE ?= 3ecdd36
bench-wasm-compare: ## the default module call of BASE (a git revision) and of this tree, alternately
	scripts/bench-wasm-compare $(BASE)

bench-admission: ## latency the demo's admission modules add to a ConfigMap create
	$(GO) test ./cmd/wasmkube/cli -run '^$$' -bench BenchmarkAdmissionLatency -benchtime 2000x -timeout 20m

bench-admission-compare: ## what the demo's modules add to a create, BASE against this tree, alternately
	scripts/bench-admission-compare $(BASE)

bench-kubewarden: ## Kubewarden policy calls (waPC, WASI) and context-aware lookups (calls in make bench's report)
	$(GO) test ./wasm/kubewarden -run '^$$' -bench BenchmarkKubewardenPolicy -benchtime 2000x
	$(GO) test . -run '^$$' -bench BenchmarkKubewardenLookup -benchtime 1000x -timeout 20m

cross: ## build for $(PLATFORMS) into dist/
	@for p in $(PLATFORMS); do \
	  os=$${p%/*}; arch=$${p#*/}; out=dist/wasmkube-$$os-$$arch; \
	  echo "building $$out"; \
	  CGO_ENABLED=0 GOOS=$$os GOARCH=$$arch $(GO) build -trimpath -ldflags "-s -w $(LDFLAGS)" -o $$out ./cmd/wasmkube || exit 1; \
	done

clean: ## remove build outputs
	rm -rf bin dist

EXAMPLES := $(patsubst examples/%/main.go,%,$(wildcard examples/*/main.go))
# The exact flags of every committed example .wasm; examples/examples_test.go checks them.
# Kubewarden WASI-mode policies (executionMode: wasi in metadata.yml) are commands, the others
# reactors (-buildmode=c-shared); a metadata.yml is written into the module (module annotate).
WASM_BUILD := GOOS=wasip1 GOARCH=wasm $(GO) build -trimpath -buildvcs=false -ldflags="-s -w -buildid="

.PHONY: examples
examples: ## build every example module (examples/NAME/NAME.wasm)
	@for e in $(EXAMPLES); do \
	  out=examples/$$e/$$e.wasm; md=examples/$$e/metadata.yml; mode=-buildmode=c-shared; \
	  if grep -q '^executionMode: wasi' $$md 2>/dev/null; then mode=; fi; \
	  echo "building $$out"; $(WASM_BUILD) $$mode -o $$out ./examples/$$e || exit 1; \
	  if [ -f $$md ]; then $(GO) run ./cmd/wasmkube module annotate $$out -m $$md -o $$out || exit 1; fi; \
	done

# Crate-free Rust examples (examples/NAME/lib.rs): Debian's rustc 1.63 and its wasm32-wasi std
# (apt-get install rustc libstd-rust-dev-wasm32). The output depends on the compiler's version:
# examples/examples_test.go rebuilds them with that version and skips with another.
RUSTC ?= /usr/bin/rustc
RUST_EXAMPLES := $(patsubst examples/%/lib.rs,%,$(wildcard examples/*/lib.rs))
examples-rust: ## build the crate-free Rust example modules (needs Debian's rustc + libstd-rust-dev-wasm32)
	@for e in $(RUST_EXAMPLES); do \
	  echo "building examples/$$e/$$e.wasm"; \
	  (cd examples/$$e && $(RUSTC) --edition 2021 --crate-type cdylib --target wasm32-wasi -C opt-level=3 \
	    -C strip=symbols --remap-path-prefix=$$PWD=. -o $$e.wasm lib.rs) || exit 1; \
	done

HOSTILE := $(wildcard wasm/testdata/hostile/*.wat wasm/kubewarden/testdata/hostile/*.wat)
hostile: ## assemble the hostile test modules (wasm/testdata/hostile/*.wat; needs wat2wasm from Debian's wabt)
	@for w in $(HOSTILE); do \
	  flags=$$(sed -n 's/^;; wat2wasm-flags://p' $$w); \
	  echo "wat2wasm $$flags $$w"; wat2wasm $$flags $$w -o $${w%.wat}.wasm || exit 1; \
	done

# Rego example policies (examples/NAME/policy.rego), compiled by wasmkube itself with OPA's
# compiler and annotated with their metadata.yml; examples/examples_test.go checks they are current.
REGO_EXAMPLES := $(patsubst examples/%/policy.rego,%,$(wildcard examples/*/policy.rego))
.PHONY: examples-rego
examples-rego: ## compile the Rego example policies (examples/NAME/policy.rego) with wasmkube module build-rego
	@for e in $(REGO_EXAMPLES); do \
	  echo "building examples/$$e/$$e.wasm"; \
	  $(GO) run ./cmd/wasmkube module build-rego examples/$$e/policy.rego -m examples/$$e/metadata.yml -o examples/$$e/$$e.wasm || exit 1; \
	done
