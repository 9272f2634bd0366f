#!/bin/sh
# build.sh builds ggml's CUDA backend from the github.com/ollama/ollama
# module source (see CMakeLists.txt) and installs libggml-cuda.so and
# libggml-base.so into a directory for llama.Config.BackendDir.
#
#   third_party/ggml-cuda/build.sh [DEST]     default DEST: third_party/ggml-cuda/lib
#
# Environment:
#   CUDA_ARCHITECTURES  CMake CUDA architectures (default "native": the GPUs of
#                       this machine; a release image lists them, e.g.
#                       "75;80;86;89;90" or "90-real;120-virtual")
#   JOBS                parallel compile jobs (default: nproc)
#   BUILD_DIR           CMake build directory (default third_party/ggml-cuda/build)
#   OLLAMA_SOURCE_DIR   the module's source tree (default: asked of `go list`)
#
# Needs cmake >= 3.21, a C/C++ compiler and the CUDA toolkit (nvcc, cuBLAS).
set -eu
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
dest=${1:-$here/lib}
build=${BUILD_DIR:-$here/build}
arch=${CUDA_ARCHITECTURES:-native}
jobs=${JOBS:-$(nproc)}

# OLLAMA_SOURCE_DIR: a copy of the module's tree (machines without Go).
src=${OLLAMA_SOURCE_DIR:-$(cd "$root" && go list -m -f '{{.Dir}}' github.com/ollama/ollama)}
if [ -z "$src" ] || [ ! -d "$src/ml/backend/ggml/ggml/src/ggml-cuda" ]; then
	(cd "$root" && go mod download github.com/ollama/ollama)
	src=$(cd "$root" && go list -m -f '{{.Dir}}' github.com/ollama/ollama)
fi

cmake -S "$here" -B "$build" \
	-DOLLAMA_SOURCE_DIR="$src" \
	-DCMAKE_BUILD_TYPE=Release \
	-DCMAKE_CUDA_ARCHITECTURES="$arch" \
	-DCMAKE_INSTALL_PREFIX="$dest"
cmake --build "$build" --target ggml-cuda --parallel "$jobs"
cmake --install "$build"
echo "ggml CUDA backend installed in $dest"
ls -l "$dest"
