# Two commands do everything: `make run` (the local demo, or the agent
# against $KUBECONFIG) and `make test` (what CI runs).
SHELL := /bin/bash
GO ?= go
export GOTOOLCHAIN := local

TOOLS_DIR := internal/testenv/tools
TOOLS_KEY := $(shell cat $(TOOLS_DIR)/go.mod $(TOOLS_DIR)/go.sum | sha256sum | cut -c1-16)
CACHE_DIR ?= $(HOME)/.cache/tether
# The control-plane binaries live outside the work tree, keyed by the tools
# module, so a fresh clone on the same machine reuses them.
TETHER_TEST_BIN ?= $(CACHE_DIR)/control-plane-$(TOOLS_KEY)
export TETHER_TEST_BIN
# Gitea, the real Git host of internal/e2e, is built the same way: once,
# into a folder keyed by its own tools module and build script.
GITEA_DIR := internal/testenv/gitea
GITEA_KEY := $(shell cat $(GITEA_DIR)/go.mod $(GITEA_DIR)/go.sum $(GITEA_DIR)/build.sh | sha256sum | cut -c1-16)
TETHER_TEST_GITEA ?= $(CACHE_DIR)/gitea-$(GITEA_KEY)
export TETHER_TEST_GITEA

VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -s -w -X main.version=$(VERSION)
TEST_TIMEOUT ?= 40m

.PHONY: run test build test-bin test-gitea deps lint fuzz generate bench clean

build: ## Build bin/tether
	@echo "[build] bin/tether $(VERSION)"; t0=$$(date +%s); \
	CGO_ENABLED=0 $(GO) build -ldflags '$(LDFLAGS)' -o bin/tether ./cmd/tether && \
	echo "[build] bin/tether ready ($$(( $$(date +%s) - t0 ))s)"

test-bin: ## Build (once) kube-apiserver, kube-controller-manager and etcd
	@$(TOOLS_DIR)/build.sh $(TETHER_TEST_BIN)

test-gitea: ## Build (once) Gitea for the end-to-end tests
	@$(GITEA_DIR)/build.sh $(TETHER_TEST_GITEA)

# The demo needs bin/tether and, without $KUBECONFIG, the control plane
# (test-bin). On a first run both build at once (each fetches its own
# modules while the other compiles), and the time to expect is said first.
CONTROL_PLANE_BINS := etcd kube-apiserver kube-controller-manager kubectl

run: ## Run the local demo (or the agent on $KUBECONFIG's cluster)
	@t0=$$(date +%s); cp=$(if $(KUBECONFIG),0,1); \
	for b in $(CONTROL_PLANE_BINS); do [ -x "$(TETHER_TEST_BIN)/$$b" ] || cold=1; done; \
	if [ "$$cp" = 1 ] && [ -n "$$cold" ]; then \
	  echo "[run] first run: the control plane builds from source while bin/tether builds: expect 10-15 minutes on 2 cores; later runs start in under a minute"; \
	  $(MAKE) --no-print-directory build & bpid=$$!; \
	  $(MAKE) --no-print-directory test-bin || { wait $$bpid; exit 1; }; \
	  wait $$bpid || exit 1; \
	else \
	  echo "[run] expect under a minute: build bin/tether (seconds when unchanged), start the demo (about 10 s)"; \
	  $(MAKE) --no-print-directory build || exit 1; \
	  if [ "$$cp" = 1 ]; then $(MAKE) --no-print-directory test-bin || exit 1; fi; \
	fi; \
	command -v curl >/dev/null || echo "[run] no curl: the demo repository's hooks cannot call the hub, so commits deploy at the next poll (10 s); apt-get install curl for instant deploys"; \
	echo "[run] built in $$(( $$(date +%s) - t0 ))s; starting the demo"; \
	exec ./bin/tether dev --examples examples --work-dir .tether-dev

# Debian packages the tests need, as command:package. The end-to-end tests
# (internal/e2e) run headless Chromium, and a hub in a network namespace
# behind an iptables rule; the demo's Git hooks call the hub with curl. The
# hub's store tests (internal/pgtest) start PostgreSQL's server from
# /usr/lib/postgresql/<major>/bin, which is not on PATH, so deps looks for
# initdb there.
DEPS := git:git chromium:chromium iptables:iptables ip:iproute2 curl:curl

deps: ## Install the Debian packages the tests need
	@missing=""; for d in $(DEPS); do command -v $${d%%:*} >/dev/null || missing="$$missing $${d#*:}"; done; \
	ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || missing="$$missing postgresql"; \
	if [ -n "$$missing" ]; then \
	  echo "[deps] installing$$missing"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; \
	else echo "[deps] $(foreach d,$(DEPS),$(lastword $(subst :, ,$(d)))) postgresql present"; fi

lint: ## gofmt, go vet, go mod tidy
	@echo "[lint] gofmt, go vet, go mod tidy"
	@$(GO) mod tidy -diff >/dev/null || { echo "go.mod/go.sum are not tidy: run go mod tidy"; $(GO) mod tidy -diff; exit 1; }
	@bad=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$bad" ]; then echo "gofmt would change:"; echo "$$bad"; exit 1; fi
	@$(GO) vet ./...

# Fuzz targets (package:Target) that `make test` runs briefly, each on its
# committed corpus (testdata/fuzz) plus FUZZ_TIME of new inputs. A finding is
# written to the package's testdata/fuzz and fails the run: commit it with
# the fix. `go test` alone replays every corpus as ordinary tests.
FUZZ_TARGETS := \
	./sync/window:FuzzCompile \
	./sync/window:FuzzNextOpen \
	./source:FuzzParseRevision \
	./source:FuzzRefValidate \
	./render:FuzzDecode \
	./render:FuzzSubstitute \
	./render:FuzzPlainMatchesKustomize \
	./hub/webhook:FuzzGitLabPush \
	./hub/webhook:FuzzGitHubPush \
	./channel/server:FuzzChannelMessage \
	./channel/tunnel:FuzzParseAccess
FUZZ_TIME ?= 10s

fuzz: ## Run each fuzz target for FUZZ_TIME
	@log=$$(mktemp); trap 'rm -f $$log' EXIT; for t in $(FUZZ_TARGETS); do \
	  pkg=$${t%%:*}; name=$${t#*:}; echo "[fuzz] $$name in $$pkg for $(FUZZ_TIME)"; \
	  $(GO) test -run '^$$' -fuzz "^$$name$$" -fuzztime $(FUZZ_TIME) -fuzzminimizetime 1s $$pkg >$$log 2>&1 || { cat $$log; exit 1; }; \
	done

test: deps test-bin test-gitea lint fuzz ## Everything CI runs
	@echo "[test] go test ./... (control plane from $(TETHER_TEST_BIN), Gitea from $(TETHER_TEST_GITEA))"
	@$(GO) test -count=1 -timeout $(TEST_TIMEOUT) ./...

bench: build test-bin ## Benchmarks, printed as one markdown table (BENCH_FLAGS=-quick: small sizes, a few minutes)
	@$(GO) run ./cmd/bench $(BENCH_FLAGS)

generate: ## Regenerate deepcopy, the CRD (controller-gen) and the channel protocol (protoc)
	@command -v protoc >/dev/null || (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq protobuf-compiler)
	@GOBIN=$(CACHE_DIR)/gobin $(GO) install sigs.k8s.io/controller-tools/cmd/controller-gen@v0.23.0
	@GOBIN=$(CACHE_DIR)/gobin $(GO) install google.golang.org/protobuf/cmd/protoc-gen-go@v1.36.12
	@GOBIN=$(CACHE_DIR)/gobin $(GO) install google.golang.org/grpc/cmd/protoc-gen-go-grpc@v1.6.0
	@$(CACHE_DIR)/gobin/controller-gen object paths=./api/... crd:crdVersions=v1 output:crd:artifacts:config=api/v1alpha1/crd
	@cp api/v1alpha1/crd/tether.dev_gitsyncs.yaml deploy/crd/
	@cp api/v1alpha1/crd/tether.dev_gitsyncs.yaml deploy/chart/tether/crds/
	@cd channel/channelpb && PATH=$(CACHE_DIR)/gobin:$$PATH protoc --go_out=. --go_opt=paths=source_relative \
	  --go-grpc_out=. --go-grpc_opt=paths=source_relative channel.proto

clean:
	rm -rf bin .tether-dev

# helm, for the chart's test (deploy/chart_test.go): built once from the Go
# module proxy at the version pinned in its own tools module, into a folder
# keyed by that module (so a change to it never rebuilds the control plane).
HELM_DIR := internal/helmtool
HELM_KEY := $(shell cat $(HELM_DIR)/go.mod $(HELM_DIR)/go.sum $(HELM_DIR)/build.sh | sha256sum | cut -c1-16)
TETHER_TEST_HELM ?= $(CACHE_DIR)/helm-$(HELM_KEY)/helm
export TETHER_TEST_HELM

.PHONY: test-helm cross

test-helm: ## Build (once) helm, then lint and render deploy/chart/tether
	@$(HELM_DIR)/build.sh $(patsubst %/,%,$(dir $(TETHER_TEST_HELM)))
	@echo "[helm] lint and template deploy/chart/tether"
	@out=$$($(TETHER_TEST_HELM) lint --strict deploy/chart/tether 2>&1) || { echo "$$out"; exit 1; }
	@out=$$($(TETHER_TEST_HELM) template tether deploy/chart/tether --namespace tether-system --include-crds 2>&1) || { echo "$$out"; exit 1; }

test: test-helm

# The platforms the image is built for (Dockerfile, docker buildx
# --platform); `make cross` checks that both binaries build and are what
# they say they are.
CROSS_PLATFORMS := linux/amd64 linux/arm64

cross: ## Cross-compile bin/tether-linux-{amd64,arm64} and check each with file
	@command -v file >/dev/null || (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq file)
	@for p in $(CROSS_PLATFORMS); do os=$${p%/*}; arch=$${p#*/}; out=bin/tether-$$os-$$arch; \
	  echo "[cross] $$out"; \
	  CGO_ENABLED=0 GOOS=$$os GOARCH=$$arch $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $$out ./cmd/tether || exit 1; \
	  case $$arch in amd64) want="x86-64";; arm64) want="ARM aarch64";; *) want="$$arch";; esac; \
	  desc=$$(file -b $$out); echo "[cross]   $$desc"; \
	  case "$$desc" in "ELF 64-bit LSB executable, $$want,"*"statically linked"*) ;; \
	    *) echo "[cross] $$out is not a statically linked $$os/$$want executable"; exit 1;; esac; \
	done
