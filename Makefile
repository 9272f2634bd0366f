# code4me build, run and test entry points. `make run` and `make test` work on
# a fresh Debian machine: they install what is missing first.

SHELL := /bin/bash
GO ?= go

# llama.cpp/ggml are compiled by cgo from the github.com/ollama/ollama module.
# Their C/C++ sources need real optimisation flags: without them the CPU path
# is several times slower (docs/benchmarks.md). Local builds target this CPU;
# set CPU_FLAGS for a portable release build (e.g. CPU_FLAGS="-mavx2 -mfma -mf16c").
CPU_FLAGS ?= -march=native
# The go command keys its build cache on the text of CGO_CFLAGS, not on what
# -march=native means on this machine: objects cached on another CPU would be
# reused (without this CPU's instructions, or with instructions this CPU
# lacks: SIGILL). CPU_ID names what the compiler's "native" is here (a
# checksum of the target options it enables), so the key follows the CPU.
ifneq ($(findstring native,$(CPU_FLAGS)),)
CPU_ID := -DCODE4ME_CPU_ID=$(shell "$${CC:-gcc}" $(CPU_FLAGS) -Q --help=target 2>/dev/null | cksum | cut -d' ' -f1)
endif
export CGO_CFLAGS ?= $(strip -O3 $(CPU_FLAGS) $(CPU_ID))
export CGO_CXXFLAGS ?= $(strip -O3 $(CPU_FLAGS) $(CPU_ID))
# Headers of llama.cpp and ggml live in the module directory, never copied
# here: third_party/link-ollama.sh points the git-ignored third_party/ollama
# at it, and engine/llama's #cgo directives use that path. (Putting them in
# CGO_CPPFLAGS would change the build-cache key of llama.cpp and rebuild it.)

VERSION ?= $(shell git describe --always --dirty 2>/dev/null || echo dev)
BIN := bin/code4me
TEST_TIMEOUT ?= 30m

.PHONY: all deps link build cgo-flags run run-cuda cuda-backend test test-race fuzz fuzz-short generate check-generate bench bench-engine bench-server bench-remote loadtest fmt vet clean

all: build

# The cgo flags, for go build/test by hand: eval "$(make -s cgo-flags)"
cgo-flags:
	@echo "export CGO_CFLAGS='$(CGO_CFLAGS)' CGO_CXXFLAGS='$(CGO_CXXFLAGS)'"

deps:
	@bash scripts/install-deps.sh

link:
	@sh third_party/link-ollama.sh

build: link web-if-npm
	$(GO) build -ldflags "-X main.version=$(VERSION)" -o $(BIN) ./cmd/code4me

# The dashboard (web/, Vite + React): npm ci, then a build into
# server/webui/dist, which the server embeds (//go:embed). `make web` always
# does both; build and test rebuild it only when web/ changed, and skip it
# with a note when npm is missing (the binary then serves a page saying how
# to build the dashboard).
.PHONY: web web-if-npm
WEB_DIST := server/webui/dist/index.html
WEB_SRC := $(shell find web/src -type f 2>/dev/null) web/index.html web/vite.config.ts web/tsconfig.json web/package.json

web:
	cd web && npm ci --no-audit --no-fund && npm run build

web-if-npm:
	@if command -v npm >/dev/null 2>&1; then $(MAKE) --no-print-directory $(WEB_DIST); \
	else echo "make: npm not found, the dashboard is not built (scripts/install-deps.sh installs Node.js)"; fi

web/node_modules/.package-lock.json: web/package-lock.json
	cd web && npm ci --no-audit --no-fund

$(WEB_DIST): web/node_modules/.package-lock.json $(WEB_SRC)
	cd web && npm run build

run: deps build
	./$(BIN) serve

# CUDA: build ggml's CUDA backend from the same module source as a loadable
# library, then run with it (needs nvcc and a GPU).
cuda-backend:
	bash third_party/ggml-cuda/build.sh build/ggml-cuda

run-cuda: cuda-backend build
	GGML_BACKEND_DIR=$(CURDIR)/build/ggml-cuda/lib ./$(BIN) serve

test: deps link web-if-npm
	$(GO) vet ./...
	$(GO) test -count=1 -race -timeout $(TEST_TIMEOUT) ./...
	@$(MAKE) --no-print-directory fuzz-short

# Fuzzing (docs/security.md): every fuzz target in turn, FUZZTIME_SHORT each
# in `make test`, FUZZTIME each in `make fuzz`. (`go test` alone runs the
# committed seed corpora as regular tests.)
FUZZTIME ?= 60s
FUZZTIME_SHORT ?= 2s

fuzz-short:
	GO=$(GO) FUZZTIME=$(FUZZTIME_SHORT) bash scripts/fuzz.sh

fuzz:
	GO=$(GO) FUZZTIME=$(FUZZTIME) bash scripts/fuzz.sh

generate:
	$(GO) tool sqlc generate

# CI: the generated code must match the SQL.
check-generate: generate
	git diff --exit-code -- models

bench: bench-engine bench-server bench-remote bench-context

# The typing workload on the 0.5B shape; then 8 typists on 2 slots of the
# tiny model with the prompt cache in host memory and without it.
bench-engine: build
	./$(BIN) bench engine
	ENGINE_THREADS=2 ./$(BIN) bench engine -model tiny -typists 8 -slots 2 -keystrokes 24 -keystrokes-nocache 0
	ENGINE_PROMPT_CACHE_MIB=0 ENGINE_THREADS=2 ./$(BIN) bench engine -model tiny -typists 8 -slots 2 -keystrokes 24 -keystrokes-nocache 0

# The typing workload through POST /api/completion/request, then through
# /api/ws/completion (private Postgres and Redis), against the bare engine,
# interleaved, on the tiny synthetic model with one thread.
bench-server: build
	./$(BIN) bench server
	./$(BIN) bench server -ws

# The same keystrokes through a server with the engine in process and a
# server of the worker tier (serve --engine=remote) with one `code4me worker`
# process, interleaved, for 1 and 4 typists.
bench-remote: build
	./$(BIN) bench server -remote

# Context and budgets: the typing workload with the context files'
# retrieved chunks against whole files; four cold starts at once, round-robin
# against earliest deadline first with planning; cold prefill through the
# scheduler against bare llama_decode (and the CPU settings) on the 0.5B shape.
bench-context: build
	./$(BIN) bench server -retrieval
	./$(BIN) bench engine -cold4 -max-tokens 64 -max-prefix 4608 -max-suffix 1536
	CODE4ME_BENCH_SETTINGS=1 CODE4ME_BENCH_SHAPE=qwen2.5-coder-0.5b go test -run '^$$' -bench ColdPrefill -benchtime 1x ./engine/llama/

# Simulated plugin users (32 by default, for 2 minutes) typing against a
# private `code4me serve` with the tiny synthetic model, on private Postgres
# and Redis; then every acknowledged row is checked in Postgres. Fails on a
# 5xx or a lost row. LOADTEST_FLAGS passes flags (-users, -duration, -url).
loadtest: build
	./$(BIN) loadtest $(LOADTEST_FLAGS)

fmt:
	gofmt -w $$(git ls-files '*.go')

vet:
	$(GO) vet ./...

clean:
	rm -rf bin build
