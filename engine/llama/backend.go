package llama

/*
#include "binding.h"
*/
import "C"

import (
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"unsafe"

	"github.com/code4me/code4me/engine"
)

// Config configures the process-wide llama.cpp backend.
type Config struct {
	// BackendDir, when set, is searched once for ggml's loadable backends
	// (libggml-cuda.so with its libggml-base.so, as third_party/ggml-cuda
	// builds them) with ggml_backend_load_all_from_path. Default "": CPU
	// only, using the ggml CPU backend linked into the binary.
	BackendDir string
}

// Backend is the llama.cpp implementation of engine.Backend. It is safe for
// concurrent use.
type Backend struct{}

var _ engine.Backend = (*Backend)(nil)

var (
	initOnce   sync.Once
	loadedMu   sync.Mutex
	loadedDirs = map[string]bool{}
)

// New initialises llama.cpp once per process (llama_backend_init) and, when
// cfg.BackendDir is set, loads the ggml backends found there (once per
// directory). It may be called more than once.
func New(cfg Config) (*Backend, error) {
	initOnce.Do(func() { C.llama_backend_init() })
	if cfg.BackendDir != "" {
		dir, err := filepath.Abs(cfg.BackendDir)
		if err != nil {
			return nil, fmt.Errorf("llama: backend dir %q: %w", cfg.BackendDir, err)
		}
		st, err := os.Stat(dir)
		if err != nil {
			return nil, fmt.Errorf("llama: backend dir: %w", err)
		}
		if !st.IsDir() {
			return nil, fmt.Errorf("llama: backend dir %q is not a directory", dir)
		}
		loadedMu.Lock()
		if !loadedDirs[dir] {
			cdir := C.CString(dir)
			C.ggml_backend_load_all_from_path(cdir)
			C.free(unsafe.Pointer(cdir))
			loadedDirs[dir] = true
		}
		loadedMu.Unlock()
	}
	return &Backend{}, nil
}

// Device describes one ggml compute device.
type Device struct {
	Name        string // e.g. "CPU", "CUDA0"
	Description string
	GPU         bool
	FreeBytes   uint64 // memory free; for the CPU, system memory
	TotalBytes  uint64
}

// Devices lists the devices ggml can use: the CPU, plus any GPU whose
// backend New loaded from Config.BackendDir.
func (*Backend) Devices() []Device {
	n := int(C.ggml_backend_dev_count())
	out := make([]Device, 0, n)
	for i := range n {
		d := C.ggml_backend_dev_get(C.size_t(i))
		if d == nil {
			continue
		}
		var free, total C.size_t
		C.ggml_backend_dev_memory(d, &free, &total)
		t := C.ggml_backend_dev_type(d)
		out = append(out, Device{
			Name:        C.GoString(C.ggml_backend_dev_name(d)),
			Description: C.GoString(C.ggml_backend_dev_description(d)),
			GPU:         t == C.GGML_BACKEND_DEVICE_TYPE_GPU || t == C.GGML_BACKEND_DEVICE_TYPE_IGPU,
			FreeBytes:   uint64(free),
			TotalBytes:  uint64(total),
		})
	}
	return out
}

// SystemInfo is llama.cpp's one-line summary of the compiled CPU features
// (AVX2, FMA, …) and backends; benchmarks record it with their results.
func SystemInfo() string {
	return C.GoString(C.llama_print_system_info())
}
