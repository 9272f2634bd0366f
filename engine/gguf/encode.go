package gguf

import (
	"encoding/binary"
	"fmt"
	"math"
)

// Q8_0 block layout: an F16 scale d followed by 32 int8 quants; x ≈ d*q.
const q8Block = 32

// EncodeF32 writes src into dst as little-endian float32; dst must hold 4*len(src) bytes.
func EncodeF32(dst []byte, src []float32) {
	_ = dst[4*len(src)-1]
	for i, v := range src {
		binary.LittleEndian.PutUint32(dst[4*i:], math.Float32bits(v))
	}
}

// EncodeF16 writes src into dst as little-endian binary16; dst must hold 2*len(src) bytes.
func EncodeF16(dst []byte, src []float32) {
	_ = dst[2*len(src)-1]
	for i, v := range src {
		binary.LittleEndian.PutUint16(dst[2*i:], Float32ToHalf(v))
	}
}

// EncodeQ8_0 quantises src (a multiple of 32 values) into dst as Q8_0 blocks:
// per block of 32, the scale d = max|x|/127 stored as F16 and q = round(x/d)
// as int8. dst must hold len(src)/32*34 bytes.
func EncodeQ8_0(dst []byte, src []float32) {
	nb := len(src) / q8Block
	_ = dst[nb*34-1]
	for b := 0; b < nb; b++ {
		x := (*[q8Block]float32)(src[b*q8Block:])
		out := (*[34]byte)(dst[b*34:])
		// Branch-free: random weights make sign branches unpredictable.
		var amaxBits uint32
		for _, v := range x {
			amaxBits = max(amaxBits, math.Float32bits(v)&0x7fffffff) // order of non-negative floats is order of their bits
		}
		d := math.Float32frombits(amaxBits) / 127
		var id float32
		if d != 0 {
			id = 1 / d
		}
		binary.LittleEndian.PutUint16(out[:], Float32ToHalf(d))
		for i, v := range x {
			out[2+i] = byte(int8(math.Round(float64(v * id)))) // as C's roundf
		}
	}
}

// DecodeQ8_0 dequantises Q8_0 blocks from src into dst (a multiple of 32 values).
func DecodeQ8_0(dst []float32, src []byte) {
	nb := len(dst) / q8Block
	_ = src[nb*34-1]
	for b := 0; b < nb; b++ {
		in := src[b*34:]
		d := HalfToFloat32(binary.LittleEndian.Uint16(in))
		for i := 0; i < q8Block; i++ {
			dst[b*q8Block+i] = d * float32(int8(in[2+i]))
		}
	}
}

// DecodeF16 converts little-endian binary16 values in src into dst.
func DecodeF16(dst []float32, src []byte) {
	_ = src[2*len(dst)-1]
	for i := range dst {
		dst[i] = HalfToFloat32(binary.LittleEndian.Uint16(src[2*i:]))
	}
}

// DecodeF32 converts little-endian float32 values in src into dst.
func DecodeF32(dst []float32, src []byte) {
	_ = src[4*len(dst)-1]
	for i := range dst {
		dst[i] = math.Float32frombits(binary.LittleEndian.Uint32(src[4*i:]))
	}
}

// Encode writes src into dst in type t (F32, F16 or Q8_0). dst must be exactly
// the encoded size of len(src) elements.
func Encode(t TensorType, dst []byte, src []float32) error {
	n, err := t.RowSize(int64(len(src)))
	if err != nil {
		return err
	}
	if int64(len(dst)) != n {
		return fmt.Errorf("gguf: encode %d %s values needs %d bytes, have %d", len(src), t, n, len(dst))
	}
	if len(src) == 0 {
		return nil
	}
	switch t {
	case TensorF32:
		EncodeF32(dst, src)
	case TensorF16:
		EncodeF16(dst, src)
	case TensorQ8_0:
		EncodeQ8_0(dst, src)
	default:
		return fmt.Errorf("gguf: cannot encode tensor type %s", t)
	}
	return nil
}

// Decode converts encoded values of type t (F32, F16 or Q8_0) from src into dst.
func Decode(t TensorType, dst []float32, src []byte) error {
	n, err := t.RowSize(int64(len(dst)))
	if err != nil {
		return err
	}
	if int64(len(src)) < n {
		return fmt.Errorf("gguf: decode %d %s values needs %d bytes, have %d", len(dst), t, n, len(src))
	}
	if len(dst) == 0 {
		return nil
	}
	switch t {
	case TensorF32:
		DecodeF32(dst, src)
	case TensorF16:
		DecodeF16(dst, src)
	case TensorQ8_0:
		DecodeQ8_0(dst, src)
	default:
		return fmt.Errorf("gguf: cannot decode tensor type %s", t)
	}
	return nil
}
