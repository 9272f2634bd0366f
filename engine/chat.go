package engine

import "errors"

// ChatMessage is one turn of a conversation.
type ChatMessage struct {
	Role    string // system, user or assistant
	Content string
}

// ErrNoChatTemplate means the model carries no chat template the backend
// can render; callers fall back to a generic layout.
var ErrNoChatTemplate = errors.New("engine: model has no usable chat template")

// ChatTemplater is implemented by models that render their own chat
// template (GGUF tokenizer.chat_template). It is safe for concurrent use.
type ChatTemplater interface {
	// ApplyChatTemplate formats msgs as the model was trained to read them;
	// addAssistant appends the start of the assistant's turn.
	ApplyChatTemplate(msgs []ChatMessage, addAssistant bool) (string, error)
}

// ChatPrompt renders msgs with the chat template of the loaded model name.
// It returns ErrNoChatTemplate when the model has none the backend knows.
func (e *Engine) ChatPrompt(model string, msgs []ChatMessage, addAssistant bool) (string, error) {
	s, err := e.Get(model)
	if err != nil {
		return "", err
	}
	ct, ok := s.Model().(ChatTemplater)
	if !ok {
		return "", ErrNoChatTemplate
	}
	return ct.ApplyChatTemplate(msgs, addAssistant)
}

// TemplateRenderer renders chat template text without a loaded model: an
// API node of the worker tier renders prompts with the template text its
// workers report, as their engines would.
type TemplateRenderer interface {
	ApplyTemplate(tmpl string, msgs []ChatMessage, addAssistant bool) (string, error)
}
