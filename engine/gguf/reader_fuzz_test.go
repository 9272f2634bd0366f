package gguf

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"io"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"testing"
)

// FuzzRead reads arbitrary bytes as a GGUF file. Properties:
//   - malformed input is an error wrapping ErrFormat, never a panic;
//   - the memory a read allocates is bounded by the input's size (plus a
//     constant): a header that claims a huge count, string or array
//     allocates only as the bytes holding it arrive;
//   - a header that reads is rejected when cut anywhere before its end;
//   - every tensor of a header that reads has a size that matches its type
//     and dimensions, and its data lies inside the data section: when the
//     file holds that section Open accepts it and ReadTensor returns the
//     tensor's own bytes, and when it does not Open refuses it.
func FuzzRead(f *testing.F) {
	for _, b := range fuzzSeedFiles(f) {
		f.Add(b)
	}
	path := filepath.Join(f.TempDir(), "fuzz.gguf")
	f.Fuzz(func(t *testing.T, b []byte) {
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		file, err := Read(bytes.NewReader(b))
		runtime.ReadMemStats(&after)
		if n := after.TotalAlloc - before.TotalAlloc; n > allocBound(len(b)) {
			t.Fatalf("reading %d bytes allocated %d bytes (bound %d)", len(b), n, allocBound(len(b)))
		}
		if err != nil {
			if !errors.Is(err, ErrFormat) {
				t.Fatalf("error %v does not wrap ErrFormat", err)
			}
			return
		}

		// The header's length: what Read takes from a reader that gives one
		// byte at a time (bufio then cannot read ahead).
		cr := &oneByteReader{b: b}
		if _, err := Read(cr); err != nil {
			t.Fatalf("read one byte at a time: %v", err)
		}
		h := cr.off
		for _, k := range []int{0, h / 2, h - 1} {
			if _, err := Read(bytes.NewReader(b[:k])); !errors.Is(err, ErrFormat) {
				t.Fatalf("header of %d bytes cut to %d: %v", h, k, err)
			}
		}
		if file.DataOffset < int64(h) || file.DataOffset-int64(h) >= int64(file.Alignment) || file.DataOffset%int64(file.Alignment) != 0 {
			t.Fatalf("data offset %d for a header of %d bytes, alignment %d", file.DataOffset, h, file.Alignment)
		}
		for _, ti := range file.Tensors {
			want, err := TensorBytes(ti.Type, ti.Dims)
			if err != nil || ti.Size != want || ti.Size < 0 {
				t.Fatalf("tensor %q %v %v: size %d, want %d (%v)", ti.Name, ti.Type, ti.Dims, ti.Size, want, err)
			}
			if ti.Offset > math.MaxInt64-uint64(ti.Size) || int64(ti.Offset)+ti.Size > file.DataSize {
				t.Fatalf("tensor %q at %d, %d bytes: outside the data section of %d bytes", ti.Name, ti.Offset, ti.Size, file.DataSize)
			}
			if ti.Offset%file.Alignment != 0 {
				t.Fatalf("tensor %q at %d: not aligned to %d", ti.Name, ti.Offset, file.Alignment)
			}
		}

		if err := os.WriteFile(path, b, 0o600); err != nil {
			t.Fatal(err)
		}
		opened, err := Open(path)
		if file.DataSize > int64(len(b))-file.DataOffset {
			if !errors.Is(err, ErrFormat) {
				t.Fatalf("data section of %d bytes at %d in a %d-byte file: Open gave %v", file.DataSize, file.DataOffset, len(b), err)
			}
			return
		}
		if err != nil {
			t.Fatalf("Open: %v", err)
		}
		r := bytes.NewReader(b)
		for _, ti := range opened.Tensors {
			data, err := opened.ReadTensor(r, ti)
			start := opened.DataOffset + int64(ti.Offset)
			if err != nil || !bytes.Equal(data, b[start:start+ti.Size]) {
				t.Fatalf("ReadTensor(%q): %d bytes, %v", ti.Name, len(data), err)
			}
		}
	})
}

// allocBound is what reading n bytes may allocate: the read buffer and
// small fixed costs, and a few dozen bytes per input byte (a key/value or
// tensor info of a dozen bytes becomes a struct, a map entry and a boxed
// value).
func allocBound(n int) uint64 { return 256<<10 + 64*uint64(n) }

type oneByteReader struct {
	b   []byte
	off int
}

func (r *oneByteReader) Read(p []byte) (int, error) {
	if r.off >= len(r.b) {
		return 0, io.EOF
	}
	if len(p) == 0 {
		return 0, nil
	}
	p[0] = r.b[r.off]
	r.off++
	return 1, nil
}

// fuzzSeedFiles is a small valid file, its cuts, and headers that claim
// more than they hold.
func fuzzSeedFiles(f *testing.F) [][]byte {
	w := NewWriter()
	w.SetString("general.architecture", "qwen2")
	w.SetUint32("general.alignment", 64)
	w.SetStrings("tokenizer.ggml.tokens", []string{"a", "Ġb", "<|fim_prefix|>"})
	w.SetInt32s("tokenizer.ggml.token_type", []int32{1, 1, 3})
	w.SetBool("general.synthetic", true)
	vals := make([]float32, 64)
	for i := range vals {
		vals[i] = float32(i) / 8
	}
	if err := w.AddTensor("a", TensorF32, []uint64{4}, FromFloat32(TensorF32, vals[:4])); err != nil {
		f.Fatal(err)
	}
	if err := w.AddTensor("b", TensorQ8_0, []uint64{32, 2}, FromFloat32(TensorQ8_0, vals)); err != nil {
		f.Fatal(err)
	}
	var buf bytes.Buffer
	if _, err := w.WriteTo(context.Background(), &buf); err != nil {
		f.Fatal(err)
	}
	good := buf.Bytes()
	le := binary.LittleEndian
	head := func(nt, nkv uint64) []byte {
		b := append([]byte(Magic), 3, 0, 0, 0)
		b = le.AppendUint64(b, nt)
		return le.AppendUint64(b, nkv)
	}
	str := func(b []byte, s string) []byte { return append(le.AppendUint64(b, uint64(len(s))), s...) }
	return [][]byte{
		good, good[:len(good)/2], good[:len(good)-8],
		head(maxCount, 0),                         // a huge tensor count, no tensors
		head(0, maxCount),                         // a huge key/value count
		le.AppendUint64(head(0, 1), maxStringLen), // a key claiming 64 MiB
		le.AppendUint64(le.AppendUint32(le.AppendUint32(str(head(0, 1), "k"), uint32(TypeArray)), uint32(TypeString)), 1<<20), // an array claiming a million strings
		le.AppendUint32(le.AppendUint64(str(head(1, 0), "t"), 1), 0),                                                          // a tensor cut after its dimensions
	}
}
