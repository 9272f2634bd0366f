package llama

// The include paths go through third_party/ollama, a git-ignored symlink to
// the module-cache directory of github.com/ollama/ollama made by
// third_party/link-ollama.sh (go generate, or make). They live here rather
// than in CGO_CPPFLAGS because the go command keys every cgo package's build
// cache entry on the CGO_* environment: changing it would rebuild llama.cpp
// and ggml (10+ minutes on two cores), while these directives only affect
// this package. ggml/src and ggml/src/ggml-cpu are for ggml's internal headers,
// which amx.cpp and amx_mmq.cpp need.

//go:generate sh ../../third_party/link-ollama.sh

/*
#cgo CPPFLAGS: -I${SRCDIR}/../../third_party/ollama/llama/llama.cpp/include
#cgo CPPFLAGS: -I${SRCDIR}/../../third_party/ollama/ml/backend/ggml/ggml/include
#cgo CPPFLAGS: -I${SRCDIR}/../../third_party/ollama/ml/backend/ggml/ggml/src
#cgo CPPFLAGS: -I${SRCDIR}/../../third_party/ollama/ml/backend/ggml/ggml/src/ggml-cpu
#cgo CFLAGS: -std=c11
#cgo CXXFLAGS: -std=c++17
#include "binding.h"
*/
import "C"

import (
	// Link llama.cpp and ggml (CPU backend) into the binary; this package
	// calls them through llama.h.
	_ "github.com/ollama/ollama/llama/llama.cpp/src"
	_ "github.com/ollama/ollama/ml/backend/ggml/ggml/src"
)
