#!/usr/bin/env bash
# gpu-check.sh: the GPU check, in two steps, for a lent GPU machine that has
# nvcc and CMake but no Go toolchain and no network.
#
#   scripts/gpu-check.sh prepare   here (with Go): builds what travels into
#                                  build/gpu.tgz (git-ignored, about 18 MiB)
#   scripts/gpu-check.sh run       there, from the repository root, with
#                                  build/gpu.tgz carried: builds ggml's CUDA
#                                  backend (make run-cuda's build), runs the
#                                  engine/llama tests with it loaded, then
#                                  `code4me bench engine` on the
#                                  qwen2.5-coder-1.5b shape; figures go to $OUT
#
# With the device tool: run `prepare` here, then on the lent machine the
# command `tar -C build -xzf build/gpu.tgz && scripts/gpu-check.sh run` with
# build/gpu.tgz carried (about 18 MiB) and a 540 s timeout.
#
# What travels: the code4me binary and the engine/llama test binary, built for
# a portable x86-64-v3 CPU level (the GPU machine's CPU is not this one), the
# ggml source tree of the github.com/ollama/ollama module (the CUDA backend is
# built from the same source the binaries link), and a few MiB of Go source
# as GOROOT/src: the synthetic model's tokenizer trains on it and the typing
# workload types it.
#
# `run` must finish in under 8 minutes on 16 cores: the CUDA build is for the
# GPU present only (CUDA_ARCHITECTURES=native), the tests use the tiny model,
# and the benchmark measures 1 and 4 typists.
set -euo pipefail
cd "$(dirname "$0")/.."
# build/_gpu: the go command skips directories whose names start with "_",
# and this one holds .go files (Go source, the ggml module tree).
gpu=build/_gpu

prepare() {
	local flags="-O3 -march=x86-64-v3"
	rm -rf "$gpu" && mkdir -p "$gpu/bin" "$gpu/goroot/src"
	make -s link
	CGO_CFLAGS="$flags" CGO_CXXFLAGS="$flags" go build -trimpath -ldflags "-s -w -X main.version=$(git describe --always --dirty)" \
		-o "$gpu/bin/code4me" ./cmd/code4me
	CGO_CFLAGS="$flags" CGO_CXXFLAGS="$flags" go test -c -trimpath -ldflags "-s -w" -o "$gpu/bin/llama.test" ./engine/llama
	local src
	src=$(go list -m -f '{{.Dir}}' github.com/ollama/ollama)
	mkdir -p "$gpu/ollama/ml/backend/ggml"
	cp -r "$src/ml/backend/ggml/ggml" "$gpu/ollama/ml/backend/ggml/"
	chmod -R u+w "$gpu/ollama"
	# Go source for the tokenizer and the typing workload (no tests, no testdata).
	local goroot
	goroot=$(go env GOROOT)
	for d in net/http go/parser go/types encoding/json; do
		mkdir -p "$gpu/goroot/src/$d"
		find "$goroot/src/$d" -maxdepth 1 -name '*.go' ! -name '*_test.go' -exec cp {} "$gpu/goroot/src/$d/" \;
	done
	tar -C build -czf build/gpu.tgz _gpu
	du -sh "$gpu" build/gpu.tgz
	echo "carry build/gpu.tgz; on the GPU machine: tar -C build -xzf build/gpu.tgz && scripts/gpu-check.sh run"
}

run() {
	local out=${OUT:-$PWD/build/gpu-out}
	mkdir -p "$out"
	exec > >(tee "$out/gpu-check.log") 2>&1
	echo "== machine ($(date -u +%FT%TZ), commit $(git rev-parse --short HEAD 2>/dev/null || echo unknown))"
	nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv || true
	nvcc --version | tail -1 || true
	nproc

	echo "== CUDA backend (make run-cuda's build)"
	local t0=$SECONDS
	OLLAMA_SOURCE_DIR=$PWD/$gpu/ollama JOBS=$(nproc) bash third_party/ggml-cuda/build.sh "$PWD/build/ggml-cuda/lib"
	echo "cuda backend built in $((SECONDS - t0)) s"
	export GGML_BACKEND_DIR=$PWD/build/ggml-cuda/lib
	export GOROOT=$PWD/$gpu/goroot
	export XDG_CACHE_HOME=$PWD/build/cache DATA_DIR=$PWD/build/data

	echo "== engine/llama tests with the CUDA backend loaded"
	t0=$SECONDS
	(cd engine/llama && CODE4ME_EXPECT_GPU=1 "../../$gpu/bin/llama.test" -test.count=1 -test.timeout=4m -test.v) >"$out/engine-tests.txt" 2>&1 &&
		echo "engine tests: PASS in $((SECONDS - t0)) s" || echo "engine tests: FAIL (see engine-tests.txt)"
	grep -E '^(--- FAIL|ok|FAIL|PASS)|gpu' "$out/engine-tests.txt" | head -40 || true

	echo "== bench engine, qwen2.5-coder-1.5b shape (synthetic weights), q8_0"
	t0=$SECONDS
	"$gpu/bin/code4me" bench engine --model qwen2.5-coder-1.5b:q8_0 --typists 1,4 --keystrokes 24 \
		--keystrokes-nocache 4 --out "$out/bench-engine.md"
	echo "bench in $((SECONDS - t0)) s"
}

case "${1:-}" in
prepare) prepare ;;
run) run ;;
*)
	echo "usage: scripts/gpu-check.sh prepare|run" >&2
	exit 2
	;;
esac
