package server

import (
	"context"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
)

// The multi-file context cache. A completion request names files of its
// project's context (Postgres, project_context_file); reading them is a
// Postgres round trip before the models can start. The server keeps each
// project's context in memory under the context version the project token
// lookup returned from Redis in the round trip authentication makes anyway
// (auth.BumpContextVersion): a request whose version matches the copy's
// uses the copy; any other reads Postgres and, when it knows the version,
// keeps what it read under that version.
//
// Why this is never stale by more than a moment: updateContext sets a new
// version after each commit, so a copy filled under a version holds every
// change committed before that version was read. A request that reads the
// old version between a change's commit and its new version sees the
// context as of just before the change, as if it had arrived a moment
// earlier. A version that could not be replaced (Redis failed after the
// commit) is the one risk; copies are therefore also dropped after
// ctxCacheTTL.

const (
	// ctxCacheTTL bounds how long a copy is used.
	ctxCacheTTL = time.Minute
	// ctxCacheMaxBytes bounds the text the cache holds; beyond it, the
	// oldest copies go.
	ctxCacheMaxBytes = 64 << 20
)

type ctxCacheEntry struct {
	version string
	files   []contextFile // every non-empty file, in the database's order
	bytes   int
	at      time.Time
}

// ctxCache is the cache. The zero value is ready.
type ctxCache struct {
	mu    sync.Mutex
	m     map[uuid.UUID]*ctxCacheEntry
	bytes int
	// hits and misses count lookups (tests, metrics).
	hits, misses atomic.Int64
}

// get returns the project's files if the copy is of version and fresh.
func (c *ctxCache) get(project uuid.UUID, version string) ([]contextFile, bool) {
	if version == "" {
		return nil, false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	e := c.m[project]
	if e == nil || e.version != version || time.Since(e.at) > ctxCacheTTL {
		c.misses.Add(1)
		return nil, false
	}
	c.hits.Add(1)
	return e.files, true
}

// put keeps files as the project's context of version.
func (c *ctxCache) put(project uuid.UUID, version string, files []contextFile) {
	if version == "" {
		return
	}
	n := 0
	for _, f := range files {
		n += len(f.name) + len(f.content)
	}
	if n > ctxCacheMaxBytes/4 {
		return // one project may not take the cache
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m == nil {
		c.m = map[uuid.UUID]*ctxCacheEntry{}
	}
	if old := c.m[project]; old != nil {
		c.bytes -= old.bytes
	}
	c.m[project] = &ctxCacheEntry{version: version, files: files, bytes: n, at: time.Now()}
	c.bytes += n
	for c.bytes > ctxCacheMaxBytes {
		var oldest uuid.UUID
		var at time.Time
		for id, e := range c.m {
			if at.IsZero() || e.at.Before(at) {
				oldest, at = id, e.at
			}
		}
		c.bytes -= c.m[oldest].bytes
		delete(c.m, oldest)
	}
}

// pick chooses a request's files from a project's files (as Code4me V2
// did): none for an empty list; every file but the current one for ["*"];
// otherwise the named files that exist, in the order named, once each.
func pick(all []contextFile, current string, want []string) []contextFile {
	if len(want) == 0 {
		return nil
	}
	var out []contextFile
	if len(want) == 1 && want[0] == "*" {
		for _, f := range all {
			if f.name != current {
				out = append(out, f)
			}
		}
		return out
	}
	byName := make(map[string]int, len(all))
	for i, f := range all {
		byName[f.name] = i
	}
	seen := map[string]bool{}
	for _, n := range want {
		i, ok := byName[n]
		if !ok || seen[n] {
			continue
		}
		seen[n] = true
		out = append(out, all[i])
	}
	return out
}

// projectContext returns every non-empty file of the project's context,
// from the cache when version is current, else from Postgres (and then
// cached under version). An unknown version ("") gets one set, so that the
// next request can use the cache.
func (s *Server) projectContext(ctx context.Context, project uuid.UUID, version string) ([]contextFile, error) {
	if files, ok := s.ctxCache.get(project, version); ok {
		return files, nil
	}
	rows, err := s.q.ProjectContextFileListAll(ctx, s.db, project)
	if err != nil {
		return nil, err
	}
	files := make([]contextFile, 0, len(rows))
	for _, r := range rows {
		if len(r.Lines) > 0 {
			files = append(files, contextFile{r.FileName, r.ChangeCount, strings.Join(r.Lines, "\n")})
		}
	}
	if version == "" {
		if err := s.tokens.InitContextVersion(ctx, project); err != nil {
			s.log.Warn("completion: " + err.Error())
		}
	} else {
		s.ctxCache.put(project, version, files)
	}
	return files, nil
}
