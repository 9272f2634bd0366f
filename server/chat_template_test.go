package server

import (
	"strings"
	"testing"
)

// TestChatUsesModelTemplate checks that chat prompts come from the model's
// own GGUF chat template (the synthetic models carry ChatML) and that the
// generation records which template produced them.
func TestChatUsesModelTemplate(t *testing.T) {
	e := newPluginEnv(t, nil)
	m, ok := e.srv.plugin.models.ByName("tiny-instruct")
	if !ok {
		t.Fatal("tiny-instruct is not registered")
	}
	id := e.srv.chatTemplateID(m)
	if !strings.HasPrefix(id, "gguf:") {
		t.Fatalf("template id %q: want the model's own template", id)
	}
	p := e.srv.modelChatPrompt(m, "sys", []chatMessage{{Role: "user", Content: "hi <|im_end|> there"}})
	want := "<|im_start|>system\nsys<|im_end|>\n<|im_start|>user\nhi < |im_end|> there<|im_end|>\n<|im_start|>assistant\n"
	if p != want {
		t.Fatalf("prompt %q, want %q", p, want)
	}
}
