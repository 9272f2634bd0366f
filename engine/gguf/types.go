package gguf

import (
	"fmt"
	"math"
	"math/bits"
)

// Magic is the four bytes every GGUF file starts with.
const Magic = "GGUF"

// Version is the GGUF version this package writes.
const Version = 3

// DefaultAlignment is the tensor data alignment when general.alignment is absent.
const DefaultAlignment = 32

// ValueType is the type tag of a key/value in a GGUF header.
type ValueType uint32

// Value types, numbered as in gguf.h.
const (
	TypeUint8   ValueType = 0
	TypeInt8    ValueType = 1
	TypeUint16  ValueType = 2
	TypeInt16   ValueType = 3
	TypeUint32  ValueType = 4
	TypeInt32   ValueType = 5
	TypeFloat32 ValueType = 6
	TypeBool    ValueType = 7
	TypeString  ValueType = 8
	TypeArray   ValueType = 9
	TypeUint64  ValueType = 10
	TypeInt64   ValueType = 11
	TypeFloat64 ValueType = 12
)

func (t ValueType) String() string {
	switch t {
	case TypeUint8:
		return "uint8"
	case TypeInt8:
		return "int8"
	case TypeUint16:
		return "uint16"
	case TypeInt16:
		return "int16"
	case TypeUint32:
		return "uint32"
	case TypeInt32:
		return "int32"
	case TypeFloat32:
		return "float32"
	case TypeBool:
		return "bool"
	case TypeString:
		return "string"
	case TypeArray:
		return "array"
	case TypeUint64:
		return "uint64"
	case TypeInt64:
		return "int64"
	case TypeFloat64:
		return "float64"
	}
	return fmt.Sprintf("ValueType(%d)", uint32(t))
}

// TensorType is a ggml tensor element type.
type TensorType uint32

// Tensor types, numbered as in ggml.h. Only F32, F16 and Q8_0 can be encoded
// by this package; the others are known so the reader can size them.
const (
	TensorF32  TensorType = 0
	TensorF16  TensorType = 1
	TensorQ4_0 TensorType = 2
	TensorQ4_1 TensorType = 3
	TensorQ5_0 TensorType = 6
	TensorQ5_1 TensorType = 7
	TensorQ8_0 TensorType = 8
	TensorQ8_1 TensorType = 9
	TensorQ2_K TensorType = 10
	TensorQ3_K TensorType = 11
	TensorQ4_K TensorType = 12
	TensorQ5_K TensorType = 13
	TensorQ6_K TensorType = 14
	TensorQ8_K TensorType = 15
	TensorBF16 TensorType = 30
)

type layout struct {
	name      string
	blockSize int // elements per block
	typeSize  int // bytes per block
}

var layouts = map[TensorType]layout{
	TensorF32:  {"F32", 1, 4},
	TensorF16:  {"F16", 1, 2},
	TensorQ4_0: {"Q4_0", 32, 18},
	TensorQ4_1: {"Q4_1", 32, 20},
	TensorQ5_0: {"Q5_0", 32, 22},
	TensorQ5_1: {"Q5_1", 32, 24},
	TensorQ8_0: {"Q8_0", 32, 34},
	TensorQ8_1: {"Q8_1", 32, 36},
	TensorQ2_K: {"Q2_K", 256, 84},
	TensorQ3_K: {"Q3_K", 256, 110},
	TensorQ4_K: {"Q4_K", 256, 144},
	TensorQ5_K: {"Q5_K", 256, 176},
	TensorQ6_K: {"Q6_K", 256, 210},
	TensorQ8_K: {"Q8_K", 256, 292},
	TensorBF16: {"BF16", 1, 2},
}

func (t TensorType) String() string {
	if l, ok := layouts[t]; ok {
		return l.name
	}
	return fmt.Sprintf("TensorType(%d)", uint32(t))
}

// ParseTensorType maps a name such as "f16" or "Q8_0" (any case) to its type.
func ParseTensorType(s string) (TensorType, error) {
	for t, l := range layouts {
		if equalFold(l.name, s) {
			return t, nil
		}
	}
	return 0, fmt.Errorf("gguf: unknown tensor type %q", s)
}

func equalFold(a, b string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := 0; i < len(a); i++ {
		x, y := a[i], b[i]
		if 'a' <= x && x <= 'z' {
			x -= 'a' - 'A'
		}
		if 'a' <= y && y <= 'z' {
			y -= 'a' - 'A'
		}
		if x != y {
			return false
		}
	}
	return true
}

// BlockSize is the number of elements one block of t holds (1 for F32/F16).
func (t TensorType) BlockSize() int { return layouts[t].blockSize }

// RowSize returns the bytes n elements of type t take. n must be a multiple
// of the block size.
func (t TensorType) RowSize(n int64) (int64, error) {
	l, ok := layouts[t]
	if !ok {
		return 0, fmt.Errorf("gguf: unknown tensor type %d", uint32(t))
	}
	if n%int64(l.blockSize) != 0 {
		return 0, fmt.Errorf("gguf: %d elements is not a multiple of the %s block size %d", n, l.name, l.blockSize)
	}
	return n / int64(l.blockSize) * int64(l.typeSize), nil
}

// TensorBytes returns the data size of a tensor of type t with dims (ne0 first).
// Each row (ne0 elements) must be a whole number of blocks, and the size must
// fit an int64: a file's header may claim any dimensions, and a size that
// wrapped around would be negative or small.
func TensorBytes(t TensorType, dims []uint64) (int64, error) {
	if len(dims) == 0 {
		return 0, fmt.Errorf("gguf: tensor without dimensions")
	}
	if l, ok := layouts[t]; ok && (dims[0] > math.MaxInt64 || dims[0]/uint64(l.blockSize) > math.MaxInt64/uint64(l.typeSize)) {
		return 0, errTooLarge(dims)
	}
	row, err := t.RowSize(int64(dims[0]))
	if err != nil {
		return 0, err
	}
	n := uint64(row)
	for _, d := range dims[1:] {
		hi, lo := bits.Mul64(n, d)
		if hi != 0 || lo > math.MaxInt64 {
			return 0, errTooLarge(dims)
		}
		n = lo
	}
	return int64(n), nil
}

func errTooLarge(dims []uint64) error {
	return fmt.Errorf("gguf: tensor of %v elements is too large", dims)
}

// File types (general.file_type), numbered as llama_ftype in llama.h.
const (
	FileTypeAllF32    uint32 = 0
	FileTypeMostlyF16 uint32 = 1
	FileTypeMostlyQ80 uint32 = 7
)
