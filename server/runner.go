package server

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"log/slog"
	"time"

	"github.com/code4me/code4me/engine"
	"github.com/code4me/code4me/internal/remote"
)

// Runner runs engine requests on named models: the in-process engine
// (engineRunner), or the worker tier (remoteRunner, `serve
// --engine=remote`). The completion, chat and replay paths use only this.
type Runner interface {
	Complete(ctx context.Context, model string, req engine.Request) (*engine.Result, error)
	Stream(ctx context.Context, model string, req engine.Request) (TextStream, error)
	// ChatPrompt renders msgs with the model's own chat template;
	// engine.ErrNoChatTemplate when it has none that llama.cpp renders.
	ChatPrompt(model string, msgs []engine.ChatMessage, addAssistant bool) (string, error)
	// ChatTemplate is the model's template text ("" when none).
	ChatTemplate(model string) string
}

// TextStream is a request's text as it is generated, then its result.
type TextStream interface {
	// Next returns the text since the previous call, io.EOF after the
	// last, or ctx's error (the request goes on).
	Next(ctx context.Context) (string, error)
	// Wait blocks until the request ends.
	Wait() (*engine.Result, error)
}

// engineRunner runs requests on the in-process engine.
type engineRunner struct{ e *engine.Engine }

func (r engineRunner) Complete(ctx context.Context, model string, req engine.Request) (*engine.Result, error) {
	return r.e.Complete(ctx, model, req)
}

func (r engineRunner) Stream(ctx context.Context, model string, req engine.Request) (TextStream, error) {
	return r.e.Stream(ctx, model, req)
}

func (r engineRunner) ChatPrompt(model string, msgs []engine.ChatMessage, addAssistant bool) (string, error) {
	return r.e.ChatPrompt(model, msgs, addAssistant)
}

func (r engineRunner) ChatTemplate(model string) string {
	if sc, err := r.e.Get(model); err == nil {
		return sc.Model().Info().ChatTemplate
	}
	return ""
}

// remoteRunner sends requests to the worker tier. Chat prompts are
// rendered here with the template text the workers report, as their
// engines would render them.
type remoteRunner struct {
	c    *remote.Client
	reg  *ModelRegistry
	tmpl engine.TemplateRenderer // nil: chat uses the fallback layout
}

func (r remoteRunner) Complete(ctx context.Context, model string, req engine.Request) (*engine.Result, error) {
	return r.c.Complete(ctx, model, req)
}

func (r remoteRunner) Stream(ctx context.Context, model string, req engine.Request) (TextStream, error) {
	return r.c.Stream(ctx, model, req)
}

func (r remoteRunner) ChatPrompt(model string, msgs []engine.ChatMessage, addAssistant bool) (string, error) {
	if r.tmpl == nil {
		return "", engine.ErrNoChatTemplate
	}
	return r.tmpl.ApplyTemplate(r.ChatTemplate(model), msgs, addAssistant)
}

func (r remoteRunner) ChatTemplate(model string) string {
	if m, ok := r.reg.ByName(model); ok {
		return m.ChatTemplate
	}
	return ""
}

// chatTemplateHash names a chat template text in template_version.
func chatTemplateHash(t string) string {
	sum := sha256.Sum256([]byte(t))
	return "gguf:" + hex.EncodeToString(sum[:6])
}

// refreshRemoteModels keeps the model registry equal to the models live
// workers serve, reading the worker registry every second until ctx ends.
func (s *Server) refreshRemoteModels(ctx context.Context, c *remote.Client) {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		s.loadRemoteModels(ctx, c)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// loadRemoteModels replaces the registry with the models live workers
// serve now.
func (s *Server) loadRemoteModels(ctx context.Context, c *remote.Client) {
	rows, err := c.Registry(ctx)
	if err != nil {
		if ctx.Err() == nil {
			s.log.Warn("worker registry", slog.String("error", err.Error()))
		}
		return
	}
	// Models of workers that died recently stay known: a request for one
	// answers 503 (no live worker) rather than "unknown model".
	seen := map[int64]bool{}
	var list []RegisteredModel
	for _, r := range rows {
		if seen[r.ModelID] {
			continue
		}
		seen[r.ModelID] = true
		m := RegisteredModel{ID: r.ModelID, Name: r.ModelName, Family: engine.Family(r.Family), Chat: r.IsChat,
			Synthetic: r.IsSynthetic, SHA256: r.FileSha256}
		if r.ChatTemplate != nil {
			m.ChatTemplate = *r.ChatTemplate
		}
		list = append(list, m)
	}
	s.plugin.models.Replace(list)
}
