package server

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"log/slog"
	"math"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/pgvector/pgvector-go"

	"github.com/code4me/code4me/engine"
	"github.com/code4me/code4me/internal/remote"
	"github.com/code4me/code4me/models"
)

// Retrieval at completion time. The query is the last complete lines
// before the cursor line (RETRIEVAL_QUERY_LINES): they change only when a
// line is finished, so while a line is typed its query, its embedding
// (cached by the text's hash) and its chunks stay the same. The chunks
// nearest to the query by cosine distance (the HNSW index), except the
// current file's chunks that the editor already shows in the prefix or
// suffix, are merged into the session's layout: the chunks laid out
// before keep their order, new ones are appended (nearest last, as the
// engine wants its most relevant extra context), and the oldest go when
// the layout is over its byte budget. Successive keystrokes therefore send
// the same extra context in the same order, which the engine keeps in its
// KV cache; a prompt changes where a chunk is appended or evicted only.

// queryEmbedTimeout bounds the embedding of a query: past it (the
// embedder is busy with a project's chunks, or on an API node no worker
// took the request) the completion lays out the files whole rather than
// wait.
const queryEmbedTimeout = 2 * time.Second

// queryCacheSize bounds the cached query embeddings.
const queryCacheSize = 4096

// queryCache maps the hash of a query text to its embedding.
type queryCache struct {
	mu sync.Mutex
	m  map[[sha256.Size]byte]pgvector.Vector
}

func (c *queryCache) get(k [sha256.Size]byte) (pgvector.Vector, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	v, ok := c.m[k]
	return v, ok
}

func (c *queryCache) put(k [sha256.Size]byte, v pgvector.Vector) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m == nil || len(c.m) >= queryCacheSize {
		c.m = map[[sha256.Size]byte]pgvector.Vector{} // start over: cheaper than tracking age
	}
	c.m[k] = v
}

// layoutChunk is a chunk in a session's layout.
type layoutChunk struct {
	id         int64
	file       string
	start, end int32
	hash       []byte
	text       string
	score      float64 // cosine similarity when it was last retrieved
	tokens     int     // its size in the prompts (chunkTokens)
}

// sessionLayout is a session's extra context, in prompt order.
type sessionLayout struct {
	chunks  []layoutChunk
	version string // the context version its chunks were checked under
	at      time.Time
}

// layoutCacheSize bounds the sessions whose layout is kept; past it the
// least recently used goes.
const layoutCacheSize = 10000

// layoutCache holds the sessions' layouts by session and file.
type layoutCache struct {
	mu sync.Mutex
	m  map[string]*sessionLayout
}

// get returns a copy of the key's layout (nil when none).
func (c *layoutCache) get(key string) *sessionLayout {
	c.mu.Lock()
	defer c.mu.Unlock()
	l := c.m[key]
	if l == nil {
		return nil
	}
	cp := *l
	cp.chunks = append([]layoutChunk(nil), l.chunks...)
	return &cp
}

func (c *layoutCache) put(key string, l *sessionLayout) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m == nil {
		c.m = map[string]*sessionLayout{}
	}
	if _, ok := c.m[key]; !ok && len(c.m) >= layoutCacheSize {
		var oldest string
		var at time.Time
		for k, v := range c.m {
			if at.IsZero() || v.at.Before(at) {
				oldest, at = k, v.at
			}
		}
		delete(c.m, oldest)
	}
	l.at = time.Now()
	c.m[key] = l
}

// retrieved is the extra context a completion lays out from retrieval.
type retrieved struct {
	chunks []layoutChunk
}

// extra is the chunks as the engine's extra context, with their files'
// names.
func (r *retrieved) extra() []engine.Chunk {
	out := make([]engine.Chunk, len(r.chunks))
	for i, c := range r.chunks {
		out[i] = engine.Chunk{Path: c.file, Text: c.text}
	}
	return out
}

// tokenCountsSize bounds the cached token counts of chunks.
const tokenCountsSize = 1 << 16

// tokenCounts caches how many tokens a chunk is for a model.
type tokenCounts struct {
	mu sync.Mutex
	m  map[string]int // model, file and content hash -> tokens
}

// tokenBudget is the tokens of extra context the models get: half of the
// least prompt budget among them (a slot's context less the tokens the
// completion may generate). The engine keeps at least that half for
// extra context whatever the prefix and suffix need, so it never drops a
// chunk of a layout within it; the prefix and suffix share the rest (the
// engine keeps about three quarters of it for the prefix). A model's own
// cap on extra context (MODEL_PROMPT_SPLIT) lowers it: past the cap the
// engine drops the oldest chunks, which changes the prompt from its first
// chunk on. 0: no model can be measured.
func (s *Server) tokenBudget(names []string, maxTokens int) int {
	if s.retr.eng == nil {
		return 0 // an API node has no tokenizer: the byte budget alone
	}
	budget := 0
	for _, name := range names {
		sc, err := s.retr.eng.Get(name)
		if err != nil {
			continue
		}
		st := sc.Stats()
		nCtx := st.NCtxPerSlot
		b := (nCtx - min(max(maxTokens, 1), nCtx/2)) / 2
		if c := st.Split.Extra; c > 0 && c < b {
			b = c
		}
		if budget == 0 || b < budget {
			budget = b
		}
	}
	return budget
}

// chunkTokens is the most tokens the chunk takes in any of the models'
// prompts: its path line, its text and a separator (a few tokens over at
// most).
func (s *Server) chunkTokens(c layoutChunk, names []string) int {
	if s.retr.eng == nil {
		return 0
	}
	tc := &s.retr.tokens
	most := 0
	for _, name := range names {
		key := name + "\x00" + c.file + "\x00" + string(c.hash)
		tc.mu.Lock()
		n, ok := tc.m[key]
		tc.mu.Unlock()
		if !ok {
			sc, err := s.retr.eng.Get(name)
			if err != nil {
				continue
			}
			toks, err := sc.Model().Tokenize(c.file+"\n"+c.text+"\n", false, false)
			if err != nil {
				continue
			}
			n = len(toks) + 2
			tc.mu.Lock()
			if tc.m == nil || len(tc.m) >= tokenCountsSize {
				tc.m = map[string]int{}
			}
			tc.m[key] = n
			tc.mu.Unlock()
		}
		most = max(most, n)
	}
	return most
}

// chunkRef is a laid-out chunk as meta_query.context_chunks names it.
type chunkRef struct {
	ID        int64   `json:"id"`
	File      string  `json:"file"`
	StartLine int32   `json:"start_line"`
	EndLine   int32   `json:"end_line"`
	Score     float64 `json:"score"`
}

// json is meta_query.context_chunks: nil without retrieval.
func (r *retrieved) json() json.RawMessage {
	if r == nil {
		return nil
	}
	refs := make([]chunkRef, len(r.chunks))
	for i, c := range r.chunks {
		refs[i] = chunkRef{ID: c.id, File: c.file, StartLine: c.start, EndLine: c.end, Score: c.score}
	}
	b, err := json.Marshal(refs)
	if err != nil {
		return nil
	}
	return b
}

// queryText is the retrieval query of a prefix: its last n complete lines
// before the cursor line, else the cursor line; "" when blank.
func queryText(prefix string, n int) string {
	lines, cursor := engine.SplitCursorLine(prefix)
	lines = strings.TrimSuffix(lines, "\n")
	if strings.TrimSpace(lines) == "" {
		return strings.TrimSpace(cursor)
	}
	start := len(lines)
	for range n {
		i := strings.LastIndexByte(lines[:start], '\n')
		if i < 0 {
			start = 0
			break
		}
		start = i
	}
	return strings.TrimPrefix(lines[start:], "\n")
}

// visibleLines is the set of non-blank lines of the text the editor sent
// (prefix and suffix), trimmed.
func visibleLines(prefix, suffix string) map[string]bool {
	out := map[string]bool{}
	for _, t := range []string{prefix, suffix} {
		for l := range strings.SplitSeq(t, "\n") {
			if l = strings.TrimSpace(l); l != "" {
				out[l] = true
			}
		}
	}
	return out
}

// inWindow reports whether a chunk of the current file overlaps what the
// editor shows: at least a quarter of its non-blank lines are among the
// visible lines. (The stored file and the editor's window are not tied by
// line numbers: the prefix and suffix may be cut.)
func inWindow(text string, visible map[string]bool) bool {
	n, seen := 0, 0
	for l := range strings.SplitSeq(text, "\n") {
		if l = strings.TrimSpace(l); l == "" {
			continue
		}
		n++
		if visible[l] {
			seen++
		}
	}
	return n > 0 && 4*seen >= n
}

// retrieve returns the extra context of a completion for the models
// (engine names) that generate at most maxTokens tokens, from the
// project's embedded chunks of the files pr.files names, merged into the
// session's layout under key; nil when retrieval does not apply (off, no
// files asked for, no query text, no embedded chunk yet): then the files
// are laid out whole.
func (s *Server) retrieve(ctx context.Context, p *Principal, key string, pr *prepared, names []string, maxTokens int) *retrieved {
	r := &s.retr
	embedder := r.embedder()
	if embedder == "" || p.ProjectID == uuid.Nil || len(pr.files) == 0 {
		return nil
	}
	text := queryText(pr.ctx.Prefix, r.queryLines)
	if text == "" {
		return nil
	}
	h := sha256.Sum256([]byte(embedder + "\x00" + text))
	q, ok := r.queries.get(h)
	if !ok {
		ectx, cancel := context.WithTimeout(ctx, queryEmbedTimeout)
		vecs, err := r.emb.Embed(ectx, embedder, []string{text})
		cancel()
		if err != nil {
			switch {
			case ctx.Err() != nil:
			case errors.Is(err, remote.ErrNoWorker), errors.Is(err, context.DeadlineExceeded):
				// The model's workers are gone or busy: this keystroke lays
				// out the files whole, the next one asks again.
				s.log.Debug("retrieval: embed query", slog.String("error", err.Error()))
			default:
				s.log.Warn("retrieval: embed query", slog.String("error", err.Error()))
			}
			return nil
		}
		r.queryEmbeds.Add(1)
		q = pgvector.NewVector(fitDims(vecs[0]))
		r.queries.put(h, q)
	}
	files := make([]string, len(pr.files))
	for i, f := range pr.files {
		files[i] = f.name
	}
	rows, err := s.q.ProjectContextChunkSearch(ctx, s.db, models.ProjectContextChunkSearchParams{ProjectID: p.ProjectID,
		Embedder: embedder, FileNames: files, Query: q, MaxRows: int32(3 * r.topK)})
	if err != nil {
		if ctx.Err() == nil {
			s.log.Warn("retrieval: search", slog.String("error", err.Error()))
		}
		return nil
	}
	if len(rows) == 0 {
		return nil
	}
	visible := visibleLines(pr.ctx.Prefix, pr.ctx.Suffix)
	current := pr.ctx.FileName
	var found []layoutChunk
	for _, row := range rows {
		if len(found) == r.topK {
			break
		}
		if row.FileName == current && inWindow(row.Content, visible) {
			continue
		}
		c := layoutChunk{id: row.ChunkID, file: row.FileName, start: row.StartLine, end: row.EndLine,
			hash: row.ContentHash, text: row.Content, score: row.Score}
		c.tokens = s.chunkTokens(c, names)
		found = append(found, c)
	}
	l := r.layouts.get(key)
	if l == nil {
		l = &sessionLayout{}
	}
	if l.version == "" || l.version != p.ContextVersion {
		s.dropGone(ctx, p.ProjectID, l)
		l.version = p.ContextVersion
	}
	tokens := s.tokenBudget(names, maxTokens)
	if tokens == 0 {
		tokens = math.MaxInt
	}
	l.chunks = mergeLayout(l.chunks, found, r.budget, tokens, func(c layoutChunk) bool {
		return c.file == current && inWindow(c.text, visible)
	})
	r.layouts.put(key, l)
	out := &retrieved{chunks: append([]layoutChunk(nil), l.chunks...)}
	if len(out.chunks) == 0 {
		return nil
	}
	return out
}

// dropGone removes from l the chunks the project's context no longer
// holds (their file changed). On error l is left as it is.
func (s *Server) dropGone(ctx context.Context, project uuid.UUID, l *sessionLayout) {
	if len(l.chunks) == 0 {
		return
	}
	arg := models.ProjectContextChunkPresentParams{ProjectID: project}
	for _, c := range l.chunks {
		arg.FileNames = append(arg.FileNames, c.file)
		arg.ContentHashes = append(arg.ContentHashes, c.hash)
	}
	rows, err := s.q.ProjectContextChunkPresent(ctx, s.db, arg)
	if err != nil {
		return
	}
	present := map[string]bool{}
	for _, r := range rows {
		present[r.FileName+"\x00"+string(r.ContentHash)] = true
	}
	kept := l.chunks[:0]
	for _, c := range l.chunks {
		if present[c.file+"\x00"+string(c.hash)] {
			kept = append(kept, c)
		}
	}
	l.chunks = kept
}

// mergeLayout merges the chunks found (nearest first) into the layout.
// The wanted chunks are the nearest found ones that fit the budgets
// together (budget bytes of text, tokens tokens; the nearest one always).
// Chunks already laid out stay in place (their id and score refreshed),
// except those drop says to leave out; wanted chunks not laid out yet are
// appended, nearest last; then the oldest chunks that are not wanted go
// while the layout is over a budget. Merging the same chunks again
// changes nothing, so a query that stays the same keeps its layout.
func mergeLayout(layout, found []layoutChunk, budget, tokens int, drop func(layoutChunk) bool) []layoutChunk {
	same := func(a, b layoutChunk) bool { return a.file == b.file && bytes.Equal(a.hash, b.hash) }
	var wanted []layoutChunk
	nBytes, nTokens := 0, 0
	for i, f := range found {
		if i > 0 && (nBytes+len(f.text) > budget || nTokens+f.tokens > tokens) {
			break
		}
		wanted = append(wanted, f)
		nBytes += len(f.text)
		nTokens += f.tokens
	}
	isWanted := func(c layoutChunk) bool {
		return slices.ContainsFunc(wanted, func(w layoutChunk) bool { return same(w, c) })
	}
	out := make([]layoutChunk, 0, len(layout)+len(wanted))
	for _, c := range layout {
		if drop(c) {
			continue
		}
		if i := slices.IndexFunc(found, func(f layoutChunk) bool { return same(f, c) }); i >= 0 {
			c.id, c.score = found[i].id, found[i].score
		}
		out = append(out, c)
	}
	for i := len(wanted) - 1; i >= 0; i-- {
		w := wanted[i]
		if !slices.ContainsFunc(out, func(c layoutChunk) bool { return same(c, w) }) {
			out = append(out, w)
		}
	}
	nBytes, nTokens = 0, 0
	for _, c := range out {
		nBytes += len(c.text)
		nTokens += c.tokens
	}
	for nBytes > budget || nTokens > tokens {
		i := slices.IndexFunc(out, func(c layoutChunk) bool { return !isWanted(c) })
		if i < 0 {
			break
		}
		nBytes -= len(out[i].text)
		nTokens -= out[i].tokens
		out = slices.Delete(out, i, i+1)
	}
	return out
}
