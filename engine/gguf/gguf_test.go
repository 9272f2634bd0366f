package gguf

import (
	"bytes"
	"context"
	"errors"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"reflect"
	"testing"
)

func TestWriteReadRoundTrip(t *testing.T) {
	w := NewWriter()
	w.SetString("general.architecture", "qwen2")
	w.SetUint32("qwen2.block_count", 2)
	w.SetInt32("x.int", -7)
	w.SetFloat32("x.float", 1e-6)
	w.SetBool("general.synthetic", true)
	w.SetUint64("x.u64", 1<<40)
	w.SetStrings("tokenizer.ggml.tokens", []string{"a", "Ġb", "<|fim_prefix|>", ""})
	w.SetInt32s("tokenizer.ggml.token_type", []int32{1, 1, 3, 1})
	w.SetFloat32s("x.floats", []float32{0.5, -2})
	w.SetUint32("qwen2.block_count", 3) // replaces

	rng := rand.New(rand.NewPCG(1, 2))
	vals := make([]float32, 64*3)
	for i := range vals {
		vals[i] = float32(rng.NormFloat64())
	}
	must(t, w.AddTensor("a.f32", TensorF32, []uint64{5}, FromFloat32(TensorF32, vals[:5])))
	must(t, w.AddTensor("b.f16", TensorF16, []uint64{64, 3}, FromFloat32(TensorF16, vals)))
	must(t, w.AddTensor("c.q8", TensorQ8_0, []uint64{64, 3}, FromFloat32(TensorQ8_0, vals)))
	if err := w.AddTensor("c.q8", TensorF32, []uint64{1}, FromFloat32(TensorF32, vals[:1])); err == nil {
		t.Fatal("duplicate tensor accepted")
	}
	if err := w.AddTensor("bad", TensorQ8_0, []uint64{33}, FromFloat32(TensorQ8_0, vals[:33])); err == nil {
		t.Fatal("Q8_0 row of 33 accepted")
	}

	path := filepath.Join(t.TempDir(), "m.gguf")
	must(t, w.WriteFile(context.Background(), path))
	f, err := Open(path)
	must(t, err)

	if f.Version != 3 || len(f.KV) != 9 || len(f.Tensors) != 3 {
		t.Fatalf("version %d, %d kv, %d tensors", f.Version, len(f.KV), len(f.Tensors))
	}
	if v, _ := f.Uint32("qwen2.block_count"); v != 3 {
		t.Errorf("block_count = %d", v)
	}
	if v, _ := f.String("general.architecture"); v != "qwen2" {
		t.Errorf("architecture = %q", v)
	}
	if v, ok := f.Bool("general.synthetic"); !ok || !v {
		t.Errorf("synthetic = %v %v", v, ok)
	}
	if kv, _ := f.Get("x.int"); kv.Value != int32(-7) {
		t.Errorf("x.int = %v", kv.Value)
	}
	if kv, _ := f.Get("x.u64"); kv.Value != uint64(1<<40) {
		t.Errorf("x.u64 = %v", kv.Value)
	}
	if v, _ := f.Float32("x.float"); v != 1e-6 {
		t.Errorf("x.float = %v", v)
	}
	if v, _ := f.Strings("tokenizer.ggml.tokens"); !reflect.DeepEqual(v, []string{"a", "Ġb", "<|fim_prefix|>", ""}) {
		t.Errorf("tokens = %q", v)
	}
	if kv, _ := f.Get("tokenizer.ggml.token_type"); !reflect.DeepEqual(kv.Value, []int32{1, 1, 3, 1}) || kv.Elem != TypeInt32 {
		t.Errorf("token_type = %v", kv.Value)
	}
	if kv, _ := f.Get("x.floats"); !reflect.DeepEqual(kv.Value, []float32{0.5, -2}) {
		t.Errorf("floats = %v", kv.Value)
	}
	if f.DataOffset%32 != 0 {
		t.Errorf("data offset %d not aligned", f.DataOffset)
	}
	if f.ParamCount() != 5+64*3*2 {
		t.Errorf("params = %d", f.ParamCount())
	}

	fh, err := os.Open(path)
	must(t, err)
	defer fh.Close()
	for _, ti := range f.Tensors {
		if ti.Offset%32 != 0 {
			t.Errorf("%s offset %d not aligned", ti.Name, ti.Offset)
		}
		raw, err := f.ReadTensor(fh, ti)
		must(t, err)
		got := make([]float32, ti.Elements())
		must(t, Decode(ti.Type, got, raw))
		for i, g := range got {
			want := vals[i]
			tol := map[TensorType]float64{TensorF32: 0, TensorF16: 1e-3 * math.Abs(float64(want)), TensorQ8_0: 0.03}[ti.Type]
			if math.Abs(float64(g-want)) > tol+1e-7 {
				t.Fatalf("%s[%d] = %v, want %v", ti.Name, i, g, want)
			}
		}
	}
	st, _ := os.Stat(path)
	if want := f.DataOffset + int64(pad(uint64(f.DataSize), 32)); st.Size() != want {
		t.Errorf("file size %d, want %d", st.Size(), want)
	}
}

func TestQ8_0ErrorBound(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	src := make([]float32, 32*1000)
	for i := range src {
		src[i] = float32(rng.NormFloat64() * math.Pow(10, float64(i/3200-5)/2)) // 10^-2.5..10^2: scales stay normal F16
	}
	src[5] = 0 // a zero in a block
	for i := 32; i < 64; i++ {
		src[i] = 0 // an all-zero block
	}
	enc := make([]byte, len(src)/32*34)
	EncodeQ8_0(enc, src)
	dec := make([]float32, len(src))
	DecodeQ8_0(dec, enc)
	for b := 0; b < len(src)/32; b++ {
		var amax float64
		for _, v := range src[b*32 : b*32+32] {
			amax = max(amax, math.Abs(float64(v)))
		}
		// half a quantisation step plus the F16 rounding of the scale.
		bound := amax/127*0.5 + amax*1e-3
		for i := b * 32; i < b*32+32; i++ {
			if e := math.Abs(float64(dec[i] - src[i])); e > bound {
				t.Fatalf("block %d elem %d: |%v-%v| = %g > %g", b, i, dec[i], src[i], e, bound)
			}
		}
	}
	for i := 32; i < 64; i++ {
		if dec[i] != 0 {
			t.Fatalf("zero block decoded to %v", dec[i])
		}
	}
}

func TestHalfConversion(t *testing.T) {
	cases := []struct {
		f float32
		h uint16
	}{
		{0, 0}, {1, 0x3c00}, {-2, 0xc000}, {65504, 0x7bff}, {1e6, 0x7c00},
		{float32(math.Inf(-1)), 0xfc00}, {5.960464477539063e-08, 0x0001}, {6.103515625e-05, 0x0400},
		{1.0009765625, 0x3c01}, {1.00048828125, 0x3c00}, // tie rounds to even
		{1e-9, 0},
	}
	for _, c := range cases {
		if got := Float32ToHalf(c.f); got != c.h {
			t.Errorf("Float32ToHalf(%g) = %#04x, want %#04x", c.f, got, c.h)
		}
	}
	if h := Float32ToHalf(float32(math.NaN())); h&0x7c00 != 0x7c00 || h&0x3ff == 0 {
		t.Errorf("NaN -> %#04x", h)
	}
	// Every finite half survives a round trip through float32.
	for h := 0; h < 1<<16; h++ {
		if h&0x7c00 == 0x7c00 {
			continue
		}
		if got := Float32ToHalf(HalfToFloat32(uint16(h))); got != uint16(h) {
			t.Fatalf("round trip %#04x -> %#04x", h, got)
		}
	}
}

func TestReadRejectsMalformed(t *testing.T) {
	w := NewWriter()
	w.SetString("general.architecture", "llama")
	must(t, w.AddTensor("t", TensorF32, []uint64{8}, FromFloat32(TensorF32, make([]float32, 8))))
	var buf bytes.Buffer
	if _, err := w.WriteTo(context.Background(), &buf); err != nil {
		t.Fatal(err)
	}
	good := buf.Bytes()
	if _, err := Read(bytes.NewReader(good)); err != nil {
		t.Fatal(err)
	}
	bad := map[string][]byte{
		"empty":     nil,
		"magic":     append([]byte("GGUX"), good[4:]...),
		"truncated": good[:40],
		"version":   append(append([]byte("GGUF"), 9, 0, 0, 0), good[8:]...),
	}
	for name, b := range bad {
		if _, err := Read(bytes.NewReader(b)); err == nil {
			t.Errorf("%s: no error", name)
		} else if name != "empty" && !errors.Is(err, ErrFormat) {
			t.Errorf("%s: %v does not wrap ErrFormat", name, err)
		}
	}
	path := filepath.Join(t.TempDir(), "short.gguf")
	must(t, os.WriteFile(path, good[:len(good)-8], 0o644))
	if _, err := Open(path); !errors.Is(err, ErrFormat) {
		t.Errorf("truncated data: %v", err)
	}
}

func TestWriteCancelled(t *testing.T) {
	w := NewWriter()
	for i := 0; i < 8; i++ {
		must(t, w.AddTensor(string(rune('a'+i)), TensorF32, []uint64{32}, func(ctx context.Context, dst []byte) error {
			return ctx.Err()
		}))
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	path := filepath.Join(t.TempDir(), "x.gguf")
	if err := w.WriteFile(ctx, path); !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v", err)
	}
	if _, err := os.Stat(path); !os.IsNotExist(err) {
		t.Fatalf("file left behind: %v", err)
	}
	ents, _ := os.ReadDir(filepath.Dir(path))
	if len(ents) != 0 {
		t.Fatalf("temporary files left: %v", ents)
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
