package server

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/google/uuid"

	"github.com/code4me/code4me/engine"
	"github.com/code4me/code4me/internal/db"
	"github.com/code4me/code4me/models"
)

// Re-running a stored completion generation.
//
// A completion's rows hold every input of its engine request: the redacted
// prefix, suffix and file name (context), the context files' redacted
// content in prompt order (query_context_file), the stop sequences
// (completion_query), and per generation the sampler with its token limit
// and stop mode, the seed, the template version and the model, whose row
// names the exact weights (model.file_sha256). Nothing is taken from the
// server's current defaults, so a replay on the same weights, template and
// build gives the same tokens. Only a query whose context was stored can be
// replayed.

// Replay errors.
var (
	errReplayNoContext = errors.New("the query's context was not stored")
	errReplayModel     = errors.New("the generation's model file is not loaded")
	errReplayTemplate  = errors.New("the model's prompt template differs from the generation's")
	errReplayRow       = errors.New("the generation row lacks what a replay needs")
	errReplayRetrieved = errors.New("the query's prompt held chunks retrieved from the project context, which replay does not rebuild")
)

// Replay is a completion generation run again from its stored rows.
type Replay struct {
	// Request is the engine request rebuilt from the rows.
	Request engine.Request
	// Model is the engine model that ran it.
	Model string
	// Stored is the generation as stored: its completion, stop reason,
	// tokens generated and log-probabilities, and the build that made it.
	Stored models.GenerationReplayGetRow
	// Result is the re-run's result; Text is its completion redacted and
	// made storable exactly as generation.completion is.
	Result *engine.Result
	Text   string
}

// storedSampler is generation.sampler as samplerParams writes it.
type storedSampler struct {
	Temperature   float32 `json:"temperature"`
	TopK          int     `json:"top_k"`
	TopP          float32 `json:"top_p"`
	MinP          float32 `json:"min_p"`
	RepeatPenalty float32 `json:"repeat_penalty"`
	RepeatLastN   int     `json:"repeat_last_n"`
	MaxTokens     int     `json:"max_tokens"`
	Mode          string  `json:"mode"`
	// Suffix false: the prompt left the suffix out (a study arm's policy).
	Suffix *bool `json:"suffix,omitempty"`
}

// ReplayGeneration rebuilds the engine request of the completion generation
// (queryID, modelID) from its stored rows alone and runs it again, with no
// earlier request's KV cache, on the model of the same id (the same file).
// It fails with db.ErrNotFound when there is no such completion
// generation, and refuses a query whose context was not stored, a model
// that is not loaded and a prompt template that changed. It blocks until
// the engine answers or ctx ends; any goroutine may call it.
func (s *Server) ReplayGeneration(ctx context.Context, queryID uuid.UUID, modelID int64) (*Replay, error) {
	row, err := s.q.GenerationReplayGet(ctx, s.db, models.GenerationReplayGetParams{MetaQueryID: queryID, ModelID: modelID})
	if err != nil {
		return nil, fmt.Errorf("replay: read generation: %w", db.Translate(err))
	}
	// The stored context files are what a query without retrieval laid
	// out; a query with retrieved chunks had other text in its prompt.
	if n, err := s.q.MetaQueryRetrievedChunks(ctx, s.db, queryID); err != nil || n > 0 {
		return nil, fmt.Errorf("replay: %w", cmp.Or(err, errReplayRetrieved))
	}
	if !row.HasContext {
		return nil, fmt.Errorf("replay: %w", errReplayNoContext)
	}
	m, ok := s.plugin.models.Get(modelID)
	if !ok || s.plugin.runner == nil || m.SHA256 != row.FileSha256 {
		return nil, fmt.Errorf("replay: model %d: %w", modelID, errReplayModel)
	}
	if row.TemplateVersion == nil || *row.TemplateVersion != "engine/"+string(m.Family) {
		return nil, fmt.Errorf("replay: model %d: %w", modelID, errReplayTemplate)
	}
	var sp storedSampler
	if err := json.Unmarshal(row.Sampler, &sp); err != nil {
		return nil, fmt.Errorf("replay: sampler: %w", err)
	}
	if sp.Mode == "" {
		sp.Mode = completionMode // the only mode completions are made with
	}
	mode, ok := completionModes[sp.Mode]
	if row.Seed == nil || !ok || sp.MaxTokens <= 0 {
		return nil, fmt.Errorf("replay: %w", errReplayRow)
	}
	files, err := s.q.QueryContextFileList(ctx, s.db, queryID)
	if err != nil {
		return nil, fmt.Errorf("replay: read context files: %w", err)
	}
	extra := make([]engine.Chunk, len(files))
	for i, f := range files {
		if f.Content == nil {
			return nil, fmt.Errorf("replay: context file %d: %w", f.Ordinal, errReplayNoContext)
		}
		extra[i] = engine.Chunk{Path: f.FileName, Text: *f.Content}
	}
	suffix := row.Suffix
	if sp.Suffix != nil && !*sp.Suffix {
		suffix = ""
	}
	req := engine.Request{
		Prefix: row.Prefix, Suffix: suffix, FilePath: row.FileName, Extra: extra,
		Sampling: engine.SamplingParams{Temperature: sp.Temperature, TopK: sp.TopK, TopP: sp.TopP, MinP: sp.MinP,
			RepeatPenalty: sp.RepeatPenalty, RepeatLastN: sp.RepeatLastN, Seed: uint32(*row.Seed)},
		MaxTokens: sp.MaxTokens, Stop: row.StopSequences, Mode: mode,
	}
	ctx, cancel := context.WithTimeout(ctx, completionTimeout)
	defer cancel()
	res, err := s.plugin.runner.Complete(ctx, m.Name, req)
	if err != nil {
		return nil, fmt.Errorf("replay: model %q: %w", m.Name, err)
	}
	if res.Err != nil {
		return nil, fmt.Errorf("replay: model %q: %s: %w", m.Name, res.Stop, res.Err)
	}
	text, _ := s.plugin.redactor.Text(ctx, pgText(res.Text))
	return &Replay{Request: req, Model: m.Name, Stored: row, Result: res, Text: text}, nil
}
