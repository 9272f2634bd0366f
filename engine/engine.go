package engine

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
)

// ModelSpec names a model file to load and sizes its scheduler.
type ModelSpec struct {
	Name  string // the name requests use; unique within an Engine
	Path  string
	Load  LoadOptions
	Sched Config
}

// Engine holds several loaded models, each run by its own Scheduler. Its
// methods are safe for concurrent use; a model's Context is touched only by
// its scheduler goroutine.
type Engine struct {
	backend Backend
	log     *slog.Logger

	mu     sync.RWMutex
	models map[string]*Scheduler
	closed bool
	// embedders are the models' embedding contexts (embed.go), started
	// on a model's first Embed.
	embedders map[string]*embedder
	observer  Observer // Observe's; given to each model as it loads
}

// Observer is told of each request's result as the request ends, by the
// goroutine of its model's scheduler before the result reaches the caller:
// it must be quick and must not keep or change res.
type Observer func(model string, res *Result)

// New returns an Engine that loads models through b. log may be nil.
func New(b Backend, log *slog.Logger) *Engine {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Engine{backend: b, log: log, models: map[string]*Scheduler{}}
}

// Load loads a model and starts its scheduler. progress, when non-nil, gets
// values in [0,1] while the file loads.
func (e *Engine) Load(spec ModelSpec, progress func(float32)) (*Scheduler, error) {
	if spec.Name == "" {
		return nil, errors.New("engine: load: empty model name")
	}
	e.mu.RLock()
	_, dup := e.models[spec.Name]
	closed := e.closed
	e.mu.RUnlock()
	if closed {
		return nil, ErrClosed
	}
	if dup {
		return nil, fmt.Errorf("engine: load %q: already loaded", spec.Name)
	}
	m, err := e.backend.Load(spec.Path, spec.Load, progress)
	if err != nil {
		return nil, fmt.Errorf("load model %q: %w", spec.Path, err)
	}
	cfg := spec.Sched
	if cfg.Logger == nil {
		cfg.Logger = e.log
	}
	s, err := NewScheduler(spec.Name, m, cfg)
	if err != nil {
		m.Close()
		return nil, err
	}
	e.mu.Lock()
	if _, dup := e.models[spec.Name]; dup || e.closed {
		e.mu.Unlock()
		s.Close()
		m.Close()
		if dup {
			return nil, fmt.Errorf("engine: load %q: already loaded", spec.Name)
		}
		return nil, ErrClosed
	}
	s.observe(e.observer)
	e.models[spec.Name] = s
	e.mu.Unlock()
	return s, nil
}

// Observe makes every request of every model, loaded now or later, report
// its result to f as it ends (nil stops it): metrics are counted there,
// once per request whichever way its caller waits. A later Observe
// replaces f.
func (e *Engine) Observe(f Observer) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.observer = f
	for _, s := range e.models {
		s.observe(f)
	}
}

// Unload stops a model's scheduler (its requests end with ErrClosed) and
// closes the model.
func (e *Engine) Unload(name string) error {
	e.mu.Lock()
	s, ok := e.models[name]
	delete(e.models, name)
	e.mu.Unlock()
	if !ok {
		return fmt.Errorf("unload %q: %w", name, ErrUnknownModel)
	}
	e.closeEmbedder(name)
	s.Close()
	return s.model.Close()
}

// Get returns the scheduler of a loaded model.
func (e *Engine) Get(name string) (*Scheduler, error) {
	e.mu.RLock()
	s, ok := e.models[name]
	e.mu.RUnlock()
	if !ok {
		return nil, fmt.Errorf("model %q: %w", name, ErrUnknownModel)
	}
	return s, nil
}

// Names lists loaded models, sorted.
func (e *Engine) Names() []string {
	e.mu.RLock()
	defer e.mu.RUnlock()
	names := make([]string, 0, len(e.models))
	for n := range e.models {
		names = append(names, n)
	}
	slices.Sort(names)
	return names
}

// Stats reports every loaded model, sorted by name.
func (e *Engine) Stats() []Stats {
	var out []Stats
	for _, n := range e.Names() {
		if s, err := e.Get(n); err == nil {
			out = append(out, s.Stats())
		}
	}
	return out
}

// Complete runs req on the named model; see Scheduler.Complete.
func (e *Engine) Complete(ctx context.Context, model string, req Request) (*Result, error) {
	s, err := e.Get(model)
	if err != nil {
		return nil, err
	}
	return s.Complete(ctx, req)
}

// Stream queues req on the named model; see Scheduler.Stream.
func (e *Engine) Stream(ctx context.Context, model string, req Request) (*Stream, error) {
	s, err := e.Get(model)
	if err != nil {
		return nil, err
	}
	return s.Stream(ctx, req)
}

// Close unloads every model.
func (e *Engine) Close() error {
	e.mu.Lock()
	e.closed = true
	models := e.models
	e.models = map[string]*Scheduler{}
	e.mu.Unlock()
	var errs []error
	for name, s := range models {
		e.closeEmbedder(name)
		s.Close()
		if err := s.model.Close(); err != nil {
			errs = append(errs, fmt.Errorf("close model %q: %w", name, err))
		}
	}
	return errors.Join(errs...)
}
