package server

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/pgvector/pgvector-go"
	"github.com/riverqueue/river"

	"github.com/code4me/code4me/engine"
	"github.com/code4me/code4me/internal/config"
	"github.com/code4me/code4me/internal/remote"
	"github.com/code4me/code4me/models"
)

// Retrieval of project context (docs/context.md). Each file of a project's
// multi-file context is cut into chunks of lines (chunkLines) when the
// file is stored; the chunks' rows and the job that embeds them are
// written in the transaction of the context update, so a job never exists
// without its rows and rows never lack their job. The job embeds only
// chunks that have no embedding: a chunk whose text did not change keeps
// its vector. A completion then lays out the chunks nearest to the lines
// before its cursor (retrieval_layout.go) instead of whole files.
//
// Chunks are made only where the project's context may be kept: when every
// member of the project lets code4me store their context (store_context),
// the rule that decides whether a project's context outlives its
// sessions. Otherwise a file's chunks are deleted when it changes, and its
// completions lay out whole files as before.

// embedDims is the width of project_context_chunk.embedding. One width
// lets one HNSW index serve every row; fitDims maps an embedder's vectors
// onto it.
const embedDims = 384

// Chunking: a chunk is at most chunkMaxLines lines and at least
// chunkMinLines (but the file's last), plus the chunkOverlap lines before
// it, so a definition cut by a boundary is seen whole by one of its two
// chunks. A chunk boundary falls before a line whose hash is a multiple of
// chunkEvery (a property of the line's text alone): inserting lines moves
// only the boundaries near the change, so the other chunks keep their
// text, their hash and their embedding.
const (
	chunkMinLines = 16
	chunkMaxLines = 32
	chunkOverlap  = 8
	chunkEvery    = 8
)

// textChunk is a chunk of a file: lines [start, end) and their text.
type textChunk struct {
	start, end int
	text       string
	hash       [sha256.Size]byte
}

// chunkLines cuts a file's lines into chunks. Trailing empty lines of a
// chunk stay in its text; a file of empty lines only has no chunk.
func chunkLines(lines []string) []textChunk {
	var out []textChunk
	emit := func(from, to int) {
		s := max(from-chunkOverlap, 0)
		text := strings.Join(lines[s:to], "\n")
		if strings.TrimSpace(text) == "" {
			return
		}
		out = append(out, textChunk{start: s, end: to, text: text, hash: sha256.Sum256([]byte(text))})
	}
	from := 0
	for i := 1; i < len(lines); i++ {
		n := i - from
		if n >= chunkMaxLines || (n >= chunkMinLines && lineHash(lines[i])%chunkEvery == 0) {
			emit(from, i)
			from = i
		}
	}
	if from < len(lines) {
		emit(from, len(lines))
	}
	return out
}

// lineHash is FNV-1a of a line.
func lineHash(s string) uint32 {
	h := uint32(2166136261)
	for i := 0; i < len(s); i++ {
		h ^= uint32(s[i])
		h *= 16777619
	}
	return h
}

// fitDims maps a vector onto embedDims dimensions. A narrower one is
// padded with zeros, which keeps every cosine similarity exactly; a wider
// one is folded, coordinate i added to coordinate i mod embedDims: a fixed
// linear map, the same for every text, so equal texts stay equal and near
// ones near.
func fitDims(v []float32) []float32 {
	out := make([]float32, embedDims)
	for i, x := range v {
		out[i%embedDims] += x
	}
	return out
}

// Embedder computes the embeddings retrieval stores and queries with:
// the in-process engine (*engine.Engine) or, on an API node of the worker
// tier, the workers' engines (*remote.Client). Any goroutine may call it;
// a cancelled ctx ends the call with ctx's error.
type Embedder interface {
	// Embed returns the embedding of each text by the named model, in
	// order, each of the model's embedding width.
	Embed(ctx context.Context, model string, texts []string) ([][]float32, error)
}

// retrieval is the server's retrieval state. Off (no embedder) with
// RETRIEVAL_TOP_K 0, or while no model that can run embeds.
type retrieval struct {
	emb  Embedder               // nil: no engine, retrieval stays off
	eng  *engine.Engine         // the in-process engine (token counts); nil on an API node
	name atomic.Pointer[string] // the model that embeds; nil while off

	topK, queryLines, budget int
	limits                   contextLimits // bounds of a project's context

	queries queryCache  // embeddings of query texts
	layouts layoutCache // each session's chunks in prompt order
	tokens  tokenCounts // chunks' sizes in tokens, per model

	jobMu sync.Mutex // one embedding job at a time in this process
	// embedded counts the chunk texts the job embedded, queryEmbeds the
	// query texts embedded (tests, metrics).
	embedded, queryEmbeds atomic.Int64
}

// embedder is the model that embeds, "" when retrieval is off.
func (r *retrieval) embedder() string {
	if n := r.name.Load(); n != nil {
		return *n
	}
	return ""
}

func (r *retrieval) on() bool { return r.embedder() != "" }

// initRetrieval sets retrieval up on the in-process engine, or on the
// worker tier (rc, `serve --engine=remote`), whose embedder
// watchRemoteEmbedder picks. With the in-process engine the embedding
// model is EMBEDDING_MODEL when it is loaded, else the first completion
// model of the registry that embeds, found in the background (a model
// whose backend cannot embed is skipped); until then, and when none
// embeds, retrieval is off.
func (s *Server) initRetrieval(eng *engine.Engine, rc *remote.Client, cfg config.Config) {
	r := &s.retr
	r.topK, r.queryLines, r.budget = cfg.RetrievalTopK, cfg.RetrievalQueryLines, cfg.RetrievalBytes
	r.limits = contextLimits{files: cfg.ContextMaxFiles, fileBytes: cfg.ContextMaxFileBytes, bytes: cfg.ContextMaxBytes}
	if cfg.RetrievalTopK == 0 {
		return
	}
	if rc != nil {
		r.emb = rc
		return
	}
	if eng == nil {
		return
	}
	r.emb, r.eng = eng, eng
	if name := cfg.EmbeddingModel; name != "" {
		if _, err := eng.Get(name); err != nil {
			s.log.Warn("retrieval: off, EMBEDDING_MODEL is not loaded", slog.String("model", name))
			return
		}
		r.name.Store(&name)
		return
	}
	candidates := s.embedCandidates()
	s.background(func(ctx context.Context) {
		if !s.probeEmbedders(ctx, candidates) && len(candidates) > 0 {
			s.log.Warn("retrieval: off, no model embeds")
		}
	})
}

// embedCandidates are the models that may embed, in the order they are
// tried: EMBEDDING_MODEL alone when it is set, else the registry's
// completion models.
func (s *Server) embedCandidates() []string {
	if name := s.cfg.EmbeddingModel; name != "" {
		return []string{name}
	}
	var out []string
	if s.plugin.models != nil {
		for _, m := range s.plugin.models.List() {
			if m.Completion() {
				out = append(out, m.Name)
			}
		}
	}
	return out
}

// probeEmbedders makes the first of candidates that embeds a text the
// embedding model, turning retrieval on; false when none did.
func (s *Server) probeEmbedders(ctx context.Context, candidates []string) bool {
	r := &s.retr
	for _, name := range candidates {
		if _, err := r.emb.Embed(ctx, name, []string{"package main"}); err != nil {
			s.log.Debug("retrieval: model does not embed", slog.String("model", name), slog.String("error", err.Error()))
			continue
		}
		r.name.Store(&name)
		s.log.Info("retrieval: on", slog.String("model", name))
		return true
	}
	return false
}

// remoteEmbedderProbeEvery is how often an API node whose retrieval is off
// asks the workers again for a model that embeds.
const remoteEmbedderProbeEvery = 2 * time.Second

// watchRemoteEmbedder picks the embedding model of an API node: the first
// of embedCandidates (EMBEDDING_MODEL, else the completion models live
// workers serve, as the registry lists them) that embeds a text on a
// worker. Until one does (no worker is up yet, or none serves such a
// model) it asks again every remoteEmbedderProbeEvery, so an API node
// started before its workers turns retrieval on once they come; it stops
// when one did or ctx ends. A candidate no live worker serves costs one
// read of the worker registry, no job.
func (s *Server) watchRemoteEmbedder(ctx context.Context) {
	if s.retr.emb == nil {
		return
	}
	t := time.NewTicker(remoteEmbedderProbeEvery)
	defer t.Stop()
	for {
		pctx, cancel := context.WithTimeout(ctx, time.Minute)
		ok := s.probeEmbedders(pctx, s.embedCandidates())
		cancel()
		if ok {
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// contextEmbedArgs is the job that embeds a project's chunks that have no
// embedding by the embedding model. It holds only the project: running it
// twice embeds nothing twice.
type contextEmbedArgs struct {
	ProjectID uuid.UUID `json:"project_id"`
}

// Kind is the River job kind.
func (contextEmbedArgs) Kind() string { return "context_embed" }

// contextEmbedAttempts bounds the tries of one job.
const contextEmbedAttempts = 5

// contextEmbedBatch is how many chunks the job embeds per round trip.
const contextEmbedBatch = 32

type contextEmbedWorker struct {
	river.WorkerDefaults[contextEmbedArgs]
	s *Server
}

// Work embeds the project's pending chunks until none is left, in batches
// of contextEmbedBatch: on the in-process engine, or on an API node as one
// embedding request to a worker per batch (any node's River may run the
// job). A chunk replaced while it was embedded keeps its new, pending row.
func (w *contextEmbedWorker) Work(ctx context.Context, job *river.Job[contextEmbedArgs]) error {
	s := w.s
	r := &s.retr
	embedder := r.embedder()
	if embedder == "" {
		return nil
	}
	r.jobMu.Lock()
	defer r.jobMu.Unlock()
	for range 10000 {
		rows, err := s.q.ProjectContextChunkListPending(ctx, s.db, models.ProjectContextChunkListPendingParams{
			ProjectID: job.Args.ProjectID, Embedder: embedder, MaxRows: contextEmbedBatch})
		if err != nil || len(rows) == 0 {
			return err
		}
		texts := make([]string, len(rows))
		for i, row := range rows {
			texts[i] = row.Content
		}
		vecs, err := r.emb.Embed(ctx, embedder, texts)
		if err != nil {
			return fmt.Errorf("embed context chunks: %w", err)
		}
		if len(vecs) != len(rows) {
			return fmt.Errorf("embed context chunks: %d vectors for %d chunks", len(vecs), len(rows))
		}
		r.embedded.Add(int64(len(texts)))
		for i, row := range rows {
			if _, err := s.q.ProjectContextChunkSetEmbedding(ctx, s.db, models.ProjectContextChunkSetEmbeddingParams{
				ChunkID: row.ChunkID, ContentHash: row.ContentHash, Embedding: pgvector.NewVector(fitDims(vecs[i])),
				Embedder: embedder}); err != nil {
				return err
			}
		}
	}
	return errors.New("embed context chunks: the project's chunks keep changing")
}

// contextLimits are the bounds of one project's multi-file context.
type contextLimits struct {
	files, fileBytes, bytes int
}

// errContextTooLarge refuses an update that makes a file or the project's
// context too large (413); nothing of it is stored.
var errContextTooLarge = fail(413, MsgContextTooLarge)

// MsgContextTooLarge is the message of errContextTooLarge.
const MsgContextTooLarge = "Multi-file context too large."

// errContextTooManyFiles refuses an update that would make the project's
// context hold n files, more than limit: a 422 in the shape of the route's
// other validation errors, naming context_updates; nothing is stored.
func errContextTooManyFiles(n, limit int) error {
	return &validationError{errs: []fieldError{{Type: "too_long", Loc: []any{"body", "context_updates"},
		Msg:   fmt.Sprintf("Value error, the project's multi-file context would hold %d files, more than the %d allowed", n, limit),
		Input: n, Ctx: map[string]any{"max_length": limit}}}}
}

// contextSize is the size of a file as the bounds count it
// (project_context_file.size_bytes): its lines, each with a newline.
func contextSize(lines []string) int {
	n := len(lines)
	for _, l := range lines {
		n += len(l)
	}
	return n
}

// checkContextBounds refuses the update whose files (name to new lines)
// would take the project's context past its bounds, counted with the
// project's other files as stored in tx.
func (s *Server) checkContextBounds(ctx context.Context, tx pgx.Tx, project uuid.UUID, files map[string][]string) error {
	lim := s.retr.limits
	names := make([]string, 0, len(files))
	nFiles, nBytes := 0, 0
	for name, lines := range files {
		names = append(names, name)
		b := contextSize(lines)
		if b > lim.fileBytes {
			return errContextTooLarge
		}
		if len(lines) > 0 {
			nFiles++
			nBytes += b
		}
	}
	other, err := s.q.ProjectContextSizeExcept(ctx, tx, models.ProjectContextSizeExceptParams{ProjectID: project, FileNames: names})
	if err != nil {
		return err
	}
	if n := nFiles + int(other.Files); n > lim.files {
		return errContextTooManyFiles(n, lim.files)
	}
	if nBytes+int(other.Bytes) > lim.bytes {
		return errContextTooLarge
	}
	return nil
}

// storeChunks replaces the chunks of the files (name to new lines) in tx
// and inserts the embedding job there when some chunk needs an embedding.
// Without retrieval it does nothing; without every member's consent it
// deletes the files' chunks.
func (s *Server) storeChunks(ctx context.Context, tx pgx.Tx, project uuid.UUID, files map[string][]string) error {
	if !s.retr.on() {
		return nil
	}
	keep, err := s.q.ProjectAllMembersStoreContext(ctx, tx, project)
	if err != nil {
		return err
	}
	pending := 0
	for name, lines := range files {
		arg := models.ProjectContextChunkReplaceFileParams{ProjectID: project, FileName: name,
			ChunkIndexes: []int32{}, StartLines: []int32{}, EndLines: []int32{}, ContentHashes: [][]byte{}, Contents: []string{}}
		if keep {
			for i, c := range chunkLines(lines) {
				arg.ChunkIndexes = append(arg.ChunkIndexes, int32(i))
				arg.StartLines = append(arg.StartLines, int32(c.start))
				arg.EndLines = append(arg.EndLines, int32(c.end))
				arg.ContentHashes = append(arg.ContentHashes, c.hash[:])
				arg.Contents = append(arg.Contents, c.text)
			}
		}
		n, err := s.q.ProjectContextChunkReplaceFile(ctx, tx, arg)
		if err != nil {
			return fmt.Errorf("store context chunks: %w", err)
		}
		pending += int(n)
	}
	if pending == 0 {
		return nil
	}
	_, err = s.jobs.client.InsertTx(ctx, tx, contextEmbedArgs{ProjectID: project},
		&river.InsertOpts{Queue: s.jobs.queue, MaxAttempts: contextEmbedAttempts})
	return err
}

// modelNames are the engine names of the registered models among ids.
func (s *Server) modelNames(ids []int64) []string {
	var out []string
	for _, id := range ids {
		if m, ok := s.plugin.models.Get(id); ok {
			out = append(out, m.Name)
		}
	}
	return out
}
