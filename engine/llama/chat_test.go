package llama

import (
	"strings"
	"testing"

	"github.com/code4me/code4me/engine"
)

func TestApplyChatTemplate(t *testing.T) {
	m := loadTiny(t)
	msgs := []engine.ChatMessage{{Role: "system", Content: "be brief"}, {Role: "user", Content: "héllo " + strings.Repeat("x", 3000)}}
	got, err := m.ApplyChatTemplate(msgs, true)
	if err != nil {
		t.Fatal(err)
	}
	// The synthetic qwen models carry a ChatML template.
	want := "<|im_start|>system\nbe brief<|im_end|>\n<|im_start|>user\nhéllo " + strings.Repeat("x", 3000) + "<|im_end|>\n<|im_start|>assistant\n"
	if got != want {
		t.Fatalf("rendered %q", got[:min(len(got), 200)])
	}
	noAss, err := m.ApplyChatTemplate(msgs, false)
	if err != nil || strings.HasSuffix(noAss, "assistant\n") {
		t.Fatalf("without assistant start: %q, %v", noAss[max(0, len(noAss)-40):], err)
	}
	if _, err := m.ApplyChatTemplate(nil, true); err == nil {
		t.Fatal("no messages must be an error")
	}
}

// ApplyTemplate renders the model's template text without the model, as
// the model itself does.
func TestApplyTemplateText(t *testing.T) {
	m := loadTiny(t)
	msgs := []engine.ChatMessage{{Role: "system", Content: "s"}, {Role: "user", Content: "u"}}
	want, err := m.ApplyChatTemplate(msgs, true)
	if err != nil {
		t.Fatal(err)
	}
	got, err := ApplyTemplate(m.Info().ChatTemplate, msgs, true)
	if err != nil || got != want {
		t.Fatalf("ApplyTemplate = %q, %v; want %q", got, err, want)
	}
	if _, err := ApplyTemplate("", msgs, true); err != engine.ErrNoChatTemplate {
		t.Errorf("empty template: %v", err)
	}
}
