package gguf

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"sync"
)

// Source produces a tensor's encoded bytes. dst has exactly the tensor's data
// size; Source fills all of it. It may be called from any goroutine and
// should return ctx.Err() promptly when ctx is cancelled.
type Source func(ctx context.Context, dst []byte) error

// FromFloat32 returns a Source that encodes vals as type t.
func FromFloat32(t TensorType, vals []float32) Source {
	return func(_ context.Context, dst []byte) error { return Encode(t, dst, vals) }
}

type kv struct {
	key  string
	typ  ValueType // scalar type, or TypeArray
	elem ValueType // element type when typ is TypeArray
	val  any       // uint32, int32, float32, bool, string, uint64, []string, []int32, []float32, []uint32
}

type tensorEntry struct {
	name   string
	typ    TensorType
	dims   []uint64
	size   int64
	offset uint64
	src    Source
}

// Writer assembles a GGUF file: set key/values, add tensors with their
// Sources, then WriteTo or WriteFile. A Writer is not safe for concurrent
// use; Sources run concurrently during the write.
type Writer struct {
	kvs       []kv
	index     map[string]int
	tensors   []*tensorEntry
	names     map[string]bool
	alignment uint64

	// MaxInFlight bounds the bytes of tensor data produced ahead of the
	// file position (default 512 MiB; a larger tensor is produced alone).
	MaxInFlight int64
	// Parallelism bounds how many Sources run at once (default GOMAXPROCS).
	Parallelism int
}

// NewWriter returns an empty Writer with the default alignment.
func NewWriter() *Writer {
	return &Writer{index: map[string]int{}, names: map[string]bool{}, alignment: DefaultAlignment}
}

func (w *Writer) set(k kv) {
	if i, ok := w.index[k.key]; ok {
		w.kvs[i] = k
		return
	}
	w.index[k.key] = len(w.kvs)
	w.kvs = append(w.kvs, k)
}

// SetUint32 sets key to a uint32. Setting a key again replaces its value.
func (w *Writer) SetUint32(key string, v uint32) { w.set(kv{key: key, typ: TypeUint32, val: v}) }

// SetUint64 sets key to a uint64.
func (w *Writer) SetUint64(key string, v uint64) { w.set(kv{key: key, typ: TypeUint64, val: v}) }

// SetInt32 sets key to an int32.
func (w *Writer) SetInt32(key string, v int32) { w.set(kv{key: key, typ: TypeInt32, val: v}) }

// SetFloat32 sets key to a float32.
func (w *Writer) SetFloat32(key string, v float32) { w.set(kv{key: key, typ: TypeFloat32, val: v}) }

// SetBool sets key to a bool.
func (w *Writer) SetBool(key string, v bool) { w.set(kv{key: key, typ: TypeBool, val: v}) }

// SetString sets key to a string.
func (w *Writer) SetString(key string, v string) { w.set(kv{key: key, typ: TypeString, val: v}) }

// SetStrings sets key to an array of strings.
func (w *Writer) SetStrings(key string, v []string) {
	w.set(kv{key: key, typ: TypeArray, elem: TypeString, val: v})
}

// SetInt32s sets key to an array of int32.
func (w *Writer) SetInt32s(key string, v []int32) {
	w.set(kv{key: key, typ: TypeArray, elem: TypeInt32, val: v})
}

// SetUint32s sets key to an array of uint32.
func (w *Writer) SetUint32s(key string, v []uint32) {
	w.set(kv{key: key, typ: TypeArray, elem: TypeUint32, val: v})
}

// SetFloat32s sets key to an array of float32.
func (w *Writer) SetFloat32s(key string, v []float32) {
	w.set(kv{key: key, typ: TypeArray, elem: TypeFloat32, val: v})
}

// SetAlignment sets the tensor data alignment (a power of two) and records
// it as general.alignment.
func (w *Writer) SetAlignment(n uint32) error {
	if n == 0 || n&(n-1) != 0 {
		return fmt.Errorf("gguf: alignment %d is not a power of two", n)
	}
	w.alignment = uint64(n)
	w.SetUint32("general.alignment", n)
	return nil
}

// AddTensor appends a tensor. dims are in ggml order (ne0, the contiguous
// row length, first); each row must be whole blocks of typ.
func (w *Writer) AddTensor(name string, typ TensorType, dims []uint64, src Source) error {
	if name == "" || len(name) >= 64 {
		return fmt.Errorf("gguf: tensor name %q must be 1..63 bytes", name)
	}
	if w.names[name] {
		return fmt.Errorf("gguf: duplicate tensor %q", name)
	}
	if len(dims) == 0 || len(dims) > 4 {
		return fmt.Errorf("gguf: tensor %q has %d dimensions, want 1..4", name, len(dims))
	}
	for _, d := range dims {
		if d == 0 {
			return fmt.Errorf("gguf: tensor %q has a zero dimension", name)
		}
	}
	size, err := TensorBytes(typ, dims)
	if err != nil {
		return fmt.Errorf("gguf: tensor %q: %w", name, err)
	}
	if src == nil {
		return fmt.Errorf("gguf: tensor %q has no source", name)
	}
	w.names[name] = true
	w.tensors = append(w.tensors, &tensorEntry{name: name, typ: typ, dims: append([]uint64(nil), dims...), size: size, src: src})
	return nil
}

func pad(n, align uint64) uint64 { return (n + align - 1) / align * align }

// layout assigns tensor offsets and returns the total data size.
func (w *Writer) layout() uint64 {
	var off uint64
	for _, t := range w.tensors {
		t.offset = off
		off += pad(uint64(t.size), w.alignment)
	}
	return off
}

// encWriter writes little-endian primitives and counts bytes.
type encWriter struct {
	w   *bufio.Writer
	n   int64
	err error
	buf [8]byte
}

func (e *encWriter) bytes(b []byte) {
	if e.err != nil {
		return
	}
	var n int
	n, e.err = e.w.Write(b)
	e.n += int64(n)
}

func (e *encWriter) u8(v uint8)   { e.buf[0] = v; e.bytes(e.buf[:1]) }
func (e *encWriter) u32(v uint32) { binary.LittleEndian.PutUint32(e.buf[:], v); e.bytes(e.buf[:4]) }
func (e *encWriter) u64(v uint64) { binary.LittleEndian.PutUint64(e.buf[:], v); e.bytes(e.buf[:8]) }
func (e *encWriter) str(s string) {
	e.u64(uint64(len(s)))
	if e.err == nil {
		var n int
		n, e.err = e.w.WriteString(s)
		e.n += int64(n)
	}
}

func (e *encWriter) zeros(n uint64) {
	var z [64]byte
	for n > 0 && e.err == nil {
		k := min(n, uint64(len(z)))
		e.bytes(z[:k])
		n -= k
	}
}

func (e *encWriter) value(k kv) {
	switch k.typ {
	case TypeUint32:
		e.u32(k.val.(uint32))
	case TypeInt32:
		e.u32(uint32(k.val.(int32)))
	case TypeUint64:
		e.u64(k.val.(uint64))
	case TypeFloat32:
		e.u32(math.Float32bits(k.val.(float32)))
	case TypeBool:
		if k.val.(bool) {
			e.u8(1)
		} else {
			e.u8(0)
		}
	case TypeString:
		e.str(k.val.(string))
	case TypeArray:
		e.u32(uint32(k.elem))
		switch v := k.val.(type) {
		case []string:
			e.u64(uint64(len(v)))
			for _, s := range v {
				e.str(s)
			}
		case []int32:
			e.u64(uint64(len(v)))
			for _, x := range v {
				e.u32(uint32(x))
			}
		case []uint32:
			e.u64(uint64(len(v)))
			for _, x := range v {
				e.u32(x)
			}
		case []float32:
			e.u64(uint64(len(v)))
			for _, x := range v {
				e.u32(math.Float32bits(x))
			}
		}
	}
}

// WriteTo writes the whole file to out: header, key/values, tensor infos,
// then each tensor's data in order, padded to the alignment. Sources run
// ahead of the write position within MaxInFlight bytes.
func (w *Writer) WriteTo(ctx context.Context, out io.Writer) (int64, error) {
	w.layout()
	e := &encWriter{w: bufio.NewWriterSize(out, 1<<20)}
	e.bytes([]byte(Magic))
	e.u32(Version)
	e.u64(uint64(len(w.tensors)))
	e.u64(uint64(len(w.kvs)))
	for _, k := range w.kvs {
		e.str(k.key)
		e.u32(uint32(k.typ))
		e.value(k)
	}
	for _, t := range w.tensors {
		e.str(t.name)
		e.u32(uint32(len(t.dims)))
		for _, d := range t.dims {
			e.u64(d)
		}
		e.u32(uint32(t.typ))
		e.u64(t.offset)
	}
	e.zeros(pad(uint64(e.n), w.alignment) - uint64(e.n))
	if e.err != nil {
		return e.n, fmt.Errorf("gguf: write header: %w", e.err)
	}
	if err := w.writeData(ctx, e); err != nil {
		return e.n, err
	}
	if err := e.w.Flush(); err != nil {
		return e.n, fmt.Errorf("gguf: flush: %w", err)
	}
	return e.n, nil
}

type produced struct {
	buf []byte
	err error
}

// writeData runs the Sources with bounded look-ahead and writes results in order.
func (w *Writer) writeData(ctx context.Context, e *encWriter) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	budget := w.MaxInFlight
	if budget <= 0 {
		budget = 512 << 20
	}
	par := w.Parallelism
	if par <= 0 {
		par = runtime.GOMAXPROCS(0)
	}

	var (
		mu       sync.Mutex
		cond     = sync.NewCond(&mu)
		inFlight int64
		running  int
	)
	results := make([]chan produced, len(w.tensors))
	for i := range results {
		results[i] = make(chan produced, 1)
	}
	var wg sync.WaitGroup
	defer wg.Wait()
	go func() {
		<-ctx.Done()
		mu.Lock()
		cond.Broadcast()
		mu.Unlock()
	}()
	wg.Add(1)
	go func() { // scheduler: starts Sources in file order within the budget
		defer wg.Done()
		for i, t := range w.tensors {
			mu.Lock()
			for ctx.Err() == nil && ((inFlight > 0 && inFlight+t.size > budget) || running >= par) {
				cond.Wait()
			}
			if ctx.Err() != nil {
				mu.Unlock()
				for _, ch := range results[i:] {
					ch <- produced{err: ctx.Err()}
				}
				return
			}
			inFlight += t.size
			running++
			mu.Unlock()
			wg.Add(1)
			go func(t *tensorEntry, ch chan produced) {
				defer wg.Done()
				buf := make([]byte, t.size)
				err := t.src(ctx, buf)
				mu.Lock()
				running--
				cond.Broadcast()
				mu.Unlock()
				ch <- produced{buf: buf, err: err}
			}(t, results[i])
		}
	}()

	for i, t := range w.tensors {
		r := <-results[i]
		if r.err != nil {
			cancel()
			return fmt.Errorf("gguf: produce tensor %q: %w", t.name, r.err)
		}
		e.bytes(r.buf)
		e.zeros(pad(uint64(t.size), w.alignment) - uint64(t.size))
		mu.Lock()
		inFlight -= t.size
		cond.Broadcast()
		mu.Unlock()
		if e.err != nil {
			cancel()
			return fmt.Errorf("gguf: write tensor %q: %w", t.name, e.err)
		}
	}
	return nil
}

// WriteFile writes the file to path atomically: it writes a temporary file
// beside it and renames it into place only when everything succeeded.
func (w *Writer) WriteFile(ctx context.Context, path string) (err error) {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return fmt.Errorf("gguf: create %q: %w", path, err)
	}
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(f.Name())
		}
	}()
	if _, err = w.WriteTo(ctx, f); err != nil {
		return err
	}
	if err = f.Close(); err != nil {
		return fmt.Errorf("gguf: close %q: %w", path, err)
	}
	if err = os.Chmod(f.Name(), 0o644); err != nil {
		return fmt.Errorf("gguf: chmod %q: %w", path, err)
	}
	if err = os.Rename(f.Name(), path); err != nil {
		return fmt.Errorf("gguf: rename to %q: %w", path, err)
	}
	return nil
}

// ErrFormat is wrapped by every error the reader returns for a malformed file.
var ErrFormat = errors.New("gguf: malformed file")
