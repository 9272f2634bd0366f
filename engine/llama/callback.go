package llama

/*
#include <stdint.h>
*/
import "C"

import "unsafe"

//export c4mGoLog
func c4mGoLog(level C.int, text *C.char, _ unsafe.Pointer) {
	logLine(int(level), text)
}

//export c4mGoProgress
func c4mGoProgress(progress C.float, user unsafe.Pointer) C._Bool {
	callProgress(uintptr(user), float32(progress))
	return true
}
