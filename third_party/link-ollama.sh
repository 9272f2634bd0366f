#!/bin/sh
# link-ollama.sh points third_party/ollama at the module-cache directory of
# github.com/ollama/ollama (the version pinned in go.mod), so engine/llama's
# #cgo CPPFLAGS can name llama.h and ggml.h by a path relative to its own
# source. Nothing is copied; the link is git-ignored and machine-local.
#
# Run it from anywhere inside the repository (make does; so does
# `go generate ./engine/llama`). It is idempotent.
set -eu
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
dir=$(go list -m -f '{{.Dir}}' github.com/ollama/ollama)
if [ -z "$dir" ] || [ ! -f "$dir/llama/llama.cpp/include/llama.h" ]; then
	go mod download github.com/ollama/ollama
	dir=$(go list -m -f '{{.Dir}}' github.com/ollama/ollama)
fi
if [ ! -f "$dir/llama/llama.cpp/include/llama.h" ]; then
	echo "link-ollama: llama.h not found under $dir" >&2
	exit 1
fi
link="$root/third_party/ollama"
if [ -L "$link" ] && [ "$(readlink "$link")" = "$dir" ]; then
	exit 0
fi
rm -f "$link"
ln -s "$dir" "$link"
