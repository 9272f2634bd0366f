package llama

/*
#include "binding.h"
*/
import "C"

import (
	"fmt"
	"runtime"
	"slices"
	"strings"
	"unsafe"
)

// ftypes maps the quantization names users type (as llama.cpp's quantize
// tool spells them) to llama_ftype values.
var ftypes = map[string]C.enum_llama_ftype{
	"F32":    C.LLAMA_FTYPE_ALL_F32,
	"F16":    C.LLAMA_FTYPE_MOSTLY_F16,
	"BF16":   C.LLAMA_FTYPE_MOSTLY_BF16,
	"Q8_0":   C.LLAMA_FTYPE_MOSTLY_Q8_0,
	"Q4_0":   C.LLAMA_FTYPE_MOSTLY_Q4_0,
	"Q4_1":   C.LLAMA_FTYPE_MOSTLY_Q4_1,
	"Q5_0":   C.LLAMA_FTYPE_MOSTLY_Q5_0,
	"Q5_1":   C.LLAMA_FTYPE_MOSTLY_Q5_1,
	"Q2_K":   C.LLAMA_FTYPE_MOSTLY_Q2_K,
	"Q3_K_S": C.LLAMA_FTYPE_MOSTLY_Q3_K_S,
	"Q3_K_M": C.LLAMA_FTYPE_MOSTLY_Q3_K_M,
	"Q3_K_L": C.LLAMA_FTYPE_MOSTLY_Q3_K_L,
	"Q4_K_S": C.LLAMA_FTYPE_MOSTLY_Q4_K_S,
	"Q4_K_M": C.LLAMA_FTYPE_MOSTLY_Q4_K_M,
	"Q5_K_S": C.LLAMA_FTYPE_MOSTLY_Q5_K_S,
	"Q5_K_M": C.LLAMA_FTYPE_MOSTLY_Q5_K_M,
	"Q6_K":   C.LLAMA_FTYPE_MOSTLY_Q6_K,
}

// QuantizeTypes lists the names Quantize accepts, sorted.
func QuantizeTypes() []string {
	names := make([]string, 0, len(ftypes))
	for k := range ftypes {
		names = append(names, k)
	}
	slices.Sort(names)
	return names
}

// Quantize writes a copy of the GGUF model in quantized to ftype ("Q8_0",
// "Q4_K_M", …; see QuantizeTypes, case-insensitive) at out, using every CPU.
// Tensors whose rows do not fit the type's block size fall back to a type
// that does, as in llama.cpp's quantize tool.
func Quantize(in, out, ftype string) error {
	ft, ok := ftypes[strings.ToUpper(ftype)]
	if !ok {
		return fmt.Errorf("quantize: unknown type %q (want one of %s)", ftype, strings.Join(QuantizeTypes(), ", "))
	}
	if _, err := checkGGUF(in); err != nil {
		return fmt.Errorf("quantize %q: %w", in, err)
	}
	initOnce.Do(func() { C.llama_backend_init() })
	cin := C.CString(in)
	defer C.free(unsafe.Pointer(cin))
	cout := C.CString(out)
	defer C.free(unsafe.Pointer(cout))
	if rc := C.c4m_quantize(cin, cout, C.int(ft), C.int32_t(runtime.NumCPU())); rc != 0 {
		return fmt.Errorf("quantize %q to %s: llama.cpp failed%s", in, strings.ToUpper(ftype), lastErrorSuffix())
	}
	return nil
}
