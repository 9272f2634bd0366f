package llama

import "sync"

// The progress callback of llama_model_load_from_file gets a void* of user
// data; a Go func cannot cross into C, so each load registers its func under
// a small integer and C carries the integer.
var progress struct {
	mu   sync.Mutex
	next uintptr
	fns  map[uintptr]func(float32)
}

// registerProgress stores fn and returns its handle; 0 means none.
func registerProgress(fn func(float32)) uintptr {
	if fn == nil {
		return 0
	}
	progress.mu.Lock()
	defer progress.mu.Unlock()
	if progress.fns == nil {
		progress.fns = make(map[uintptr]func(float32))
	}
	progress.next++
	h := progress.next
	progress.fns[h] = fn
	return h
}

func unregisterProgress(h uintptr) {
	if h == 0 {
		return
	}
	progress.mu.Lock()
	delete(progress.fns, h)
	progress.mu.Unlock()
}

func callProgress(h uintptr, p float32) {
	progress.mu.Lock()
	fn := progress.fns[h]
	progress.mu.Unlock()
	if fn != nil {
		fn(min(max(p, 0), 1))
	}
}
