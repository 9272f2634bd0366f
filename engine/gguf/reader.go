package gguf

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"io"
	"math"
	"os"
)

// KeyValue is one metadata entry. Value holds uint8, int8, uint16, int16,
// uint32, int32, uint64, int64, float32, float64, bool or string for scalars,
// and a slice of those for arrays (Elem names the element type).
type KeyValue struct {
	Key   string
	Type  ValueType
	Elem  ValueType // element type when Type is TypeArray
	Value any
}

// TensorInfo describes one tensor; its data lies at File.DataOffset+Offset.
type TensorInfo struct {
	Name   string
	Dims   []uint64 // ne0 first
	Type   TensorType
	Offset uint64 // relative to the data section
	Size   int64  // data bytes
}

// Elements returns the number of elements in the tensor.
func (t TensorInfo) Elements() uint64 {
	n := uint64(1)
	for _, d := range t.Dims {
		n *= d
	}
	return n
}

// File is a parsed GGUF header: metadata and tensor infos, without data.
type File struct {
	Version    uint32
	KV         []KeyValue
	Tensors    []TensorInfo
	Alignment  uint64
	DataOffset int64 // file offset of the data section
	DataSize   int64 // bytes the data section must hold
}

// Limits on what the reader accepts, so a corrupt file fails cleanly
// instead of allocating without bound.
const (
	maxCount     = 1 << 24
	maxStringLen = 1 << 26
	maxArrayLen  = 1 << 28
)

type decoder struct {
	r   *bufio.Reader
	n   int64
	err error
	buf [8]byte
}

func (d *decoder) fail(format string, args ...any) {
	if d.err == nil {
		d.err = fmt.Errorf("%w: "+format, append([]any{ErrFormat}, args...)...)
	}
}

func (d *decoder) read(b []byte) {
	if d.err != nil {
		return
	}
	n, err := io.ReadFull(d.r, b)
	d.n += int64(n)
	if err != nil {
		if err == io.EOF || err == io.ErrUnexpectedEOF {
			d.fail("truncated at byte %d", d.n)
			return
		}
		d.err = err
	}
}

func (d *decoder) u8() uint8   { d.read(d.buf[:1]); return d.buf[0] }
func (d *decoder) u16() uint16 { d.read(d.buf[:2]); return binary.LittleEndian.Uint16(d.buf[:]) }
func (d *decoder) u32() uint32 { d.read(d.buf[:4]); return binary.LittleEndian.Uint32(d.buf[:]) }
func (d *decoder) u64() uint64 { d.read(d.buf[:8]); return binary.LittleEndian.Uint64(d.buf[:]) }

func (d *decoder) str() string {
	n := d.u64()
	if d.err != nil {
		return ""
	}
	if n > maxStringLen {
		d.fail("string of %d bytes at byte %d", n, d.n)
		return ""
	}
	// The bytes are read 64 KiB at a time, so that a length the input does
	// not hold allocates no more than the input does.
	var b []byte
	for uint64(len(b)) < n && d.err == nil {
		k := int(min(n-uint64(len(b)), 1<<16))
		b = append(b, make([]byte, k)...)
		d.read(b[len(b)-k:])
	}
	if d.err != nil {
		return ""
	}
	return string(b)
}

func (d *decoder) scalar(t ValueType) any {
	switch t {
	case TypeUint8:
		return d.u8()
	case TypeInt8:
		return int8(d.u8())
	case TypeUint16:
		return d.u16()
	case TypeInt16:
		return int16(d.u16())
	case TypeUint32:
		return d.u32()
	case TypeInt32:
		return int32(d.u32())
	case TypeUint64:
		return d.u64()
	case TypeInt64:
		return int64(d.u64())
	case TypeFloat32:
		return math.Float32frombits(d.u32())
	case TypeFloat64:
		return math.Float64frombits(d.u64())
	case TypeBool:
		b := d.u8()
		if b > 1 {
			d.fail("bool value %d", b)
		}
		return b == 1
	case TypeString:
		return d.str()
	}
	d.fail("unknown value type %d", uint32(t))
	return nil
}

// arrayOf reads n elements of type t. The slice grows as they arrive: a
// count that the input does not hold allocates no more than the input does.
func arrayOf[T any](d *decoder, n uint64, t ValueType) []T {
	out := make([]T, 0, min(n, 1<<10))
	for i := uint64(0); i < n && d.err == nil; i++ {
		v, _ := d.scalar(t).(T)
		out = append(out, v)
	}
	return out
}

func (d *decoder) array() (ValueType, any) {
	t := ValueType(d.u32())
	n := d.u64()
	if d.err != nil {
		return t, nil
	}
	if n > maxArrayLen {
		d.fail("array of %d elements", n)
		return t, nil
	}
	switch t {
	case TypeUint8:
		return t, arrayOf[uint8](d, n, t)
	case TypeInt8:
		return t, arrayOf[int8](d, n, t)
	case TypeUint16:
		return t, arrayOf[uint16](d, n, t)
	case TypeInt16:
		return t, arrayOf[int16](d, n, t)
	case TypeUint32:
		return t, arrayOf[uint32](d, n, t)
	case TypeInt32:
		return t, arrayOf[int32](d, n, t)
	case TypeUint64:
		return t, arrayOf[uint64](d, n, t)
	case TypeInt64:
		return t, arrayOf[int64](d, n, t)
	case TypeFloat32:
		return t, arrayOf[float32](d, n, t)
	case TypeFloat64:
		return t, arrayOf[float64](d, n, t)
	case TypeBool:
		return t, arrayOf[bool](d, n, t)
	case TypeString:
		return t, arrayOf[string](d, n, t)
	}
	d.fail("unsupported array element type %d", uint32(t))
	return t, nil
}

// Read parses a GGUF header (versions 2 and 3) from r, stopping before the
// tensor data. Malformed input gives an error wrapping ErrFormat.
func Read(r io.Reader) (*File, error) {
	d := &decoder{r: bufio.NewReaderSize(r, 1<<16)}
	var magic [4]byte
	d.read(magic[:])
	if d.err != nil {
		return nil, d.err
	}
	if string(magic[:]) != Magic {
		return nil, fmt.Errorf("%w: bad magic %q", ErrFormat, magic[:])
	}
	f := &File{Version: d.u32(), Alignment: DefaultAlignment}
	if d.err == nil && (f.Version < 2 || f.Version > 3) {
		return nil, fmt.Errorf("%w: unsupported version %d", ErrFormat, f.Version)
	}
	nt, nkv := d.u64(), d.u64()
	if d.err != nil {
		return nil, d.err
	}
	if nt > maxCount || nkv > maxCount {
		return nil, fmt.Errorf("%w: %d tensors, %d key/values", ErrFormat, nt, nkv)
	}
	seen := map[string]bool{}
	for i := uint64(0); i < nkv && d.err == nil; i++ {
		kv := KeyValue{Key: d.str(), Type: ValueType(d.u32())}
		if kv.Type == TypeArray {
			kv.Elem, kv.Value = d.array()
		} else {
			kv.Value = d.scalar(kv.Type)
		}
		if d.err == nil && seen[kv.Key] {
			d.fail("duplicate key %q", kv.Key)
		}
		seen[kv.Key] = true
		f.KV = append(f.KV, kv)
	}
	if d.err != nil {
		return nil, d.err
	}
	if kv, ok := f.Get("general.alignment"); ok {
		a, ok := kv.Value.(uint32)
		if !ok || a == 0 || a&(a-1) != 0 {
			return nil, fmt.Errorf("%w: general.alignment %v", ErrFormat, kv.Value)
		}
		f.Alignment = uint64(a)
	}
	for i := uint64(0); i < nt && d.err == nil; i++ {
		t := TensorInfo{Name: d.str()}
		nd := d.u32()
		if d.err != nil {
			break // nd is not read: looping over it could take billions of steps
		}
		if nd == 0 || nd > 4 {
			d.fail("tensor %q has %d dimensions", t.Name, nd)
			break
		}
		for j := uint32(0); j < nd; j++ {
			t.Dims = append(t.Dims, d.u64())
		}
		t.Type = TensorType(d.u32())
		t.Offset = d.u64()
		if d.err != nil {
			break
		}
		size, err := TensorBytes(t.Type, t.Dims)
		if err != nil {
			d.fail("tensor %q: %v", t.Name, err)
			break
		}
		t.Size = size
		if t.Offset%f.Alignment != 0 {
			d.fail("tensor %q offset %d not aligned to %d", t.Name, t.Offset, f.Alignment)
			break
		}
		if t.Offset > math.MaxInt64-uint64(size) {
			d.fail("tensor %q: offset %d plus %d bytes overflows", t.Name, t.Offset, size)
			break
		}
		f.Tensors = append(f.Tensors, t)
		f.DataSize = max(f.DataSize, int64(t.Offset)+size)
	}
	if d.err != nil {
		return nil, d.err
	}
	f.DataOffset = int64(pad(uint64(d.n), f.Alignment))
	return f, nil
}

// Open reads the header of the GGUF file at path and checks that the file
// is long enough to hold every tensor's data.
func Open(path string) (*File, error) {
	fh, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer fh.Close()
	f, err := Read(fh)
	if err != nil {
		return nil, fmt.Errorf("read gguf %q: %w", path, err)
	}
	st, err := fh.Stat()
	if err != nil {
		return nil, err
	}
	if need := f.DataOffset + f.DataSize; st.Size() < need {
		return nil, fmt.Errorf("read gguf %q: %w: truncated: %d bytes, tensors need %d", path, ErrFormat, st.Size(), need)
	}
	return f, nil
}

// Get returns the entry for key.
func (f *File) Get(key string) (KeyValue, bool) {
	for _, kv := range f.KV {
		if kv.Key == key {
			return kv, true
		}
	}
	return KeyValue{}, false
}

// String returns key's value if it is a string.
func (f *File) String(key string) (string, bool) {
	kv, _ := f.Get(key)
	v, ok := kv.Value.(string)
	return v, ok
}

// Uint32 returns key's value if it is a uint32.
func (f *File) Uint32(key string) (uint32, bool) {
	kv, _ := f.Get(key)
	v, ok := kv.Value.(uint32)
	return v, ok
}

// Bool returns key's value if it is a bool.
func (f *File) Bool(key string) (bool, bool) {
	kv, _ := f.Get(key)
	v, ok := kv.Value.(bool)
	return v, ok
}

// Float32 returns key's value if it is a float32.
func (f *File) Float32(key string) (float32, bool) {
	kv, _ := f.Get(key)
	v, ok := kv.Value.(float32)
	return v, ok
}

// Strings returns key's value if it is an array of strings.
func (f *File) Strings(key string) ([]string, bool) {
	kv, _ := f.Get(key)
	v, ok := kv.Value.([]string)
	return v, ok
}

// Tensor returns the info of the named tensor.
func (f *File) Tensor(name string) (TensorInfo, bool) {
	for _, t := range f.Tensors {
		if t.Name == name {
			return t, true
		}
	}
	return TensorInfo{}, false
}

// ParamCount returns the total number of tensor elements.
func (f *File) ParamCount() uint64 {
	var n uint64
	for _, t := range f.Tensors {
		n += t.Elements()
	}
	return n
}

// ReadTensor reads the raw data of t from r, the file f was read from.
func (f *File) ReadTensor(r io.ReaderAt, t TensorInfo) ([]byte, error) {
	buf := make([]byte, t.Size)
	if _, err := r.ReadAt(buf, f.DataOffset+int64(t.Offset)); err != nil {
		return nil, fmt.Errorf("read tensor %q: %w", t.Name, err)
	}
	return buf, nil
}
