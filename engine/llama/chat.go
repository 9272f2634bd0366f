package llama

/*
#include <stdlib.h>
#include "llama.h"
*/
import "C"

import (
	"fmt"
	"unsafe"

	"github.com/code4me/code4me/engine"
)

var _ engine.ChatTemplater = (*Model)(nil)

// ApplyChatTemplate renders msgs with the model's own chat template through
// llama_chat_apply_template, which recognises the common template families
// (ChatML, Llama 2/3, Mistral, DeepSeek, Gemma, ...) from the template text.
// It returns engine.ErrNoChatTemplate when the model has no template or
// llama.cpp does not recognise it.
func (m *Model) ApplyChatTemplate(msgs []engine.ChatMessage, addAssistant bool) (string, error) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	if m.model == nil {
		return "", ErrClosed
	}
	tmpl := C.llama_model_chat_template(m.model, nil)
	if tmpl == nil {
		return "", engine.ErrNoChatTemplate
	}
	return applyTemplate(tmpl, msgs, addAssistant)
}

// ApplyTemplate renders msgs with the chat template text tmpl (a GGUF
// tokenizer.chat_template) without a loaded model: an API node of the
// worker tier renders prompts with the template its workers report. It
// returns engine.ErrNoChatTemplate when llama.cpp does not recognise it.
func ApplyTemplate(tmpl string, msgs []engine.ChatMessage, addAssistant bool) (string, error) {
	if tmpl == "" {
		return "", engine.ErrNoChatTemplate
	}
	ct := C.CString(tmpl)
	defer C.free(unsafe.Pointer(ct))
	return applyTemplate(ct, msgs, addAssistant)
}

func applyTemplate(tmpl *C.char, msgs []engine.ChatMessage, addAssistant bool) (string, error) {
	n := len(msgs)
	if n == 0 {
		return "", fmt.Errorf("llama: chat template: no messages")
	}
	// The message array and its strings live in C memory for the call.
	cmsgs := (*[1 << 20]C.struct_llama_chat_message)(C.malloc(C.size_t(n) * C.size_t(unsafe.Sizeof(C.struct_llama_chat_message{}))))[:n:n]
	defer C.free(unsafe.Pointer(&cmsgs[0]))
	total := 0
	for i, msg := range msgs {
		cmsgs[i].role = C.CString(msg.Role)
		cmsgs[i].content = C.CString(msg.Content)
		total += len(msg.Role) + len(msg.Content)
	}
	defer func() {
		for i := range cmsgs {
			C.free(unsafe.Pointer(cmsgs[i].role))
			C.free(unsafe.Pointer(cmsgs[i].content))
		}
	}()
	size := 2*total + 256
	for range 2 {
		buf := (*C.char)(C.malloc(C.size_t(size)))
		got := C.llama_chat_apply_template(tmpl, &cmsgs[0], C.size_t(n), C.bool(addAssistant), buf, C.int32_t(size))
		if got < 0 {
			C.free(unsafe.Pointer(buf))
			return "", engine.ErrNoChatTemplate
		}
		if int(got) <= size {
			out := C.GoStringN(buf, got)
			C.free(unsafe.Pointer(buf))
			return out, nil
		}
		C.free(unsafe.Pointer(buf))
		size = int(got)
	}
	return "", fmt.Errorf("llama: chat template output did not fit")
}

var _ engine.TemplateRenderer = (*Backend)(nil)

// ApplyTemplate is the package's ApplyTemplate, for engine.TemplateRenderer.
func (b *Backend) ApplyTemplate(tmpl string, msgs []engine.ChatMessage, addAssistant bool) (string, error) {
	return ApplyTemplate(tmpl, msgs, addAssistant)
}
