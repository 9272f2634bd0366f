package llama

/*
#include "binding.h"
*/
import "C"

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"math/bits"
	"os"
)

// ErrInvalidModel marks a file that is not a well-formed GGUF model: wrong
// magic or version, a header that runs past the end of the file, or tensor
// data that the file is too short to hold. llama.cpp validates too, but some
// malformed inputs make it abort the process, so Load checks in Go first.
var ErrInvalidModel = errors.New("llama: invalid GGUF file")

const (
	ggufMagic            = 0x46554747 // "GGUF" little-endian
	ggufDefaultAlignment = 32
	ggufMaxDims          = 4
)

// GGUF metadata value types (gguf.h).
const (
	ggufUint8 = iota
	ggufInt8
	ggufUint16
	ggufInt16
	ggufUint32
	ggufInt32
	ggufFloat32
	ggufBool
	ggufString
	ggufArray
	ggufUint64
	ggufInt64
	ggufFloat64
)

var ggufScalarSize = [...]int64{
	ggufUint8: 1, ggufInt8: 1, ggufUint16: 2, ggufInt16: 2, ggufUint32: 4,
	ggufInt32: 4, ggufFloat32: 4, ggufBool: 1, ggufUint64: 8, ggufInt64: 8,
	ggufFloat64: 8,
}

// ggufReader reads a GGUF header while keeping count of the bytes consumed,
// so every length can be checked against what is left of the file.
type ggufReader struct {
	r    *bufio.Reader
	pos  int64
	size int64
	err  error
}

func (g *ggufReader) fail(format string, args ...any) {
	if g.err == nil {
		g.err = fmt.Errorf("%w: "+format, append([]any{ErrInvalidModel}, args...)...)
	}
}

func (g *ggufReader) read(n int64) []byte {
	if g.err != nil {
		return nil
	}
	if n < 0 || n > g.size-g.pos {
		g.fail("truncated header at byte %d (want %d more bytes, file has %d)", g.pos, n, g.size)
		return nil
	}
	buf := make([]byte, n)
	if _, err := io.ReadFull(g.r, buf); err != nil {
		g.fail("read header at byte %d: %v", g.pos, err)
		return nil
	}
	g.pos += n
	return buf
}

func (g *ggufReader) skip(n int64) {
	if g.err != nil {
		return
	}
	if n < 0 || n > g.size-g.pos {
		g.fail("truncated header at byte %d (want %d more bytes, file has %d)", g.pos, n, g.size)
		return
	}
	if _, err := g.r.Discard(int(n)); err != nil {
		g.fail("read header at byte %d: %v", g.pos, err)
		return
	}
	g.pos += n
}

func (g *ggufReader) u32() uint32 {
	b := g.read(4)
	if b == nil {
		return 0
	}
	return binary.LittleEndian.Uint32(b)
}

func (g *ggufReader) u64() uint64 {
	b := g.read(8)
	if b == nil {
		return 0
	}
	return binary.LittleEndian.Uint64(b)
}

// count reads a uint64 element count and checks that n elements of at least
// minSize bytes each can fit in the rest of the file.
func (g *ggufReader) count(what string, minSize int64) int64 {
	n := g.u64()
	if g.err != nil {
		return 0
	}
	if n > uint64(math.MaxInt64/minSize) || int64(n)*minSize > g.size-g.pos {
		g.fail("%s count %d does not fit in a %d-byte file", what, n, g.size)
		return 0
	}
	return int64(n)
}

func (g *ggufReader) str() string {
	n := g.count("string length", 1)
	return string(g.read(n))
}

func (g *ggufReader) value(typ uint32, depth int) (u64 uint64, isU32 bool) {
	switch {
	case typ == ggufString:
		g.str()
	case typ == ggufArray:
		if depth > 0 {
			g.fail("nested array at byte %d", g.pos)
			return 0, false
		}
		et := g.u32()
		if et == ggufString {
			n := g.count("array", 8)
			for i := int64(0); i < n && g.err == nil; i++ {
				g.str()
			}
			return 0, false
		}
		if et >= uint32(len(ggufScalarSize)) || et == ggufString || et == ggufArray {
			g.fail("unknown array element type %d at byte %d", et, g.pos)
			return 0, false
		}
		sz := ggufScalarSize[et]
		n := g.count("array", sz)
		g.skip(n * sz)
	case typ < uint32(len(ggufScalarSize)):
		b := g.read(ggufScalarSize[typ])
		if b != nil && typ == ggufUint32 {
			return uint64(binary.LittleEndian.Uint32(b)), true
		}
	default:
		g.fail("unknown value type %d at byte %d", typ, g.pos)
	}
	return 0, false
}

// checkGGUF validates the GGUF file at path without loading it: magic,
// version, every metadata entry and tensor descriptor inside the file, known
// tensor types with whole blocks, and tensor data within the file. It
// returns the file size. Errors wrap ErrInvalidModel or the os error.
func checkGGUF(path string) (int64, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return 0, err
	}
	if !st.Mode().IsRegular() {
		return 0, fmt.Errorf("%w: not a regular file", ErrInvalidModel)
	}
	g := &ggufReader{r: bufio.NewReaderSize(f, 1<<16), size: st.Size()}
	if st.Size() < 24 {
		return 0, fmt.Errorf("%w: file is %d bytes, shorter than a GGUF header", ErrInvalidModel, st.Size())
	}
	if magic := g.u32(); magic != ggufMagic {
		return 0, fmt.Errorf("%w: bad magic %#08x (not a GGUF file)", ErrInvalidModel, magic)
	}
	if v := g.u32(); v != 2 && v != 3 {
		return 0, fmt.Errorf("%w: unsupported GGUF version %d", ErrInvalidModel, v)
	}
	// A tensor descriptor takes at least 8+4+8+4+8 bytes, a metadata
	// entry at least 8+4+1.
	nTensors := g.count("tensor", 32)
	nKV := g.count("metadata", 13)
	alignment := uint64(ggufDefaultAlignment)
	for i := int64(0); i < nKV && g.err == nil; i++ {
		key := g.str()
		typ := g.u32()
		v, isU32 := g.value(typ, 0)
		if key == "general.alignment" && g.err == nil {
			if !isU32 || v == 0 || v&(v-1) != 0 {
				g.fail("general.alignment must be a power-of-two uint32")
			}
			alignment = v
		}
	}
	type tensor struct {
		name        string
		offset, end uint64
	}
	tensors := make([]tensor, 0, nTensors)
	for i := int64(0); i < nTensors && g.err == nil; i++ {
		name := g.str()
		nDims := g.u32()
		if g.err == nil && (nDims == 0 || nDims > ggufMaxDims) {
			g.fail("tensor %q has %d dimensions", name, nDims)
		}
		var dims [ggufMaxDims]uint64
		for d := uint32(0); d < nDims && g.err == nil; d++ {
			dims[d] = g.u64()
		}
		typ := g.u32()
		off := g.u64()
		if g.err != nil {
			break
		}
		n, err := tensorBytes(typ, dims[:nDims])
		if err != nil {
			g.fail("tensor %q: %v", name, err)
			break
		}
		if off%alignment != 0 {
			g.fail("tensor %q offset %d is not aligned to %d", name, off, alignment)
			break
		}
		end, carry := bits.Add64(off, n, 0)
		if carry != 0 {
			g.fail("tensor %q is too large", name)
			break
		}
		tensors = append(tensors, tensor{name, off, end})
	}
	if g.err != nil {
		return 0, g.err
	}
	dataStart := (uint64(g.pos) + alignment - 1) / alignment * alignment
	for _, t := range tensors {
		if dataStart+t.end > uint64(st.Size()) {
			return 0, fmt.Errorf("%w: truncated: tensor %q needs bytes up to %d, file has %d",
				ErrInvalidModel, t.name, dataStart+t.end, st.Size())
		}
	}
	return st.Size(), nil
}

// tensorBytes is the size of a tensor of ggml type typ and shape dims, using
// ggml's own type table.
func tensorBytes(typ uint32, dims []uint64) (uint64, error) {
	if typ >= C.GGML_TYPE_COUNT {
		return 0, fmt.Errorf("unknown tensor type %d", typ)
	}
	blck := uint64(C.ggml_blck_size(C.enum_ggml_type(typ)))
	if blck == 0 {
		return 0, fmt.Errorf("removed tensor type %d", typ)
	}
	if dims[0]%blck != 0 {
		return 0, fmt.Errorf("row of %d elements is not a multiple of the %s block size %d",
			dims[0], C.GoString(C.ggml_type_name(C.enum_ggml_type(typ))), blck)
	}
	n := uint64(C.ggml_type_size(C.enum_ggml_type(typ)))
	for i, d := range dims {
		if i == 0 {
			d /= blck
		}
		hi, lo := bits.Mul64(n, d)
		if hi != 0 || lo > math.MaxInt64 {
			return 0, errors.New("size overflows")
		}
		n = lo
	}
	return n, nil
}
