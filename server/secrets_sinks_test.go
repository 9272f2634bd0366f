package server

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/code4me/code4me/internal/config"
	"github.com/code4me/code4me/internal/testenv"
)

// The sinks of the secrets corpus (secrets_corpus_test.go): where a secret
// could leave the server, each read back as text to search.

// newSecretsEnv is newPluginEnv with the server's log kept at debug level,
// as JSON lines, and short generations: the corpus sends hundreds of
// requests.
func newSecretsEnv(t *testing.T) (*pluginEnv, *logSink) {
	t.Helper()
	eng, rec := sharedEngine(t)
	cfg, err := config.Load(func(string) (string, bool) { return "", false })
	if err != nil {
		t.Fatal(err)
	}
	cfg.DataDir = t.TempDir()
	cfg.DefaultRatePerHour = 100000
	cfg.CompletionMaxTokens, cfg.ChatMaxTokens = 2, 4
	logs := &logSink{}
	log := slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	srv, err := New(Deps{Config: cfg, Log: log, DB: testenv.Pool(t), Redis: testenv.Redis(t), Engine: eng, JobQueue: testQueue()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		srv.Shutdown(ctx)
	})
	pe := &pluginEnv{env: &env{t: t, srv: srv}, rec: rec, ids: map[string]int64{}}
	for _, m := range srv.plugin.models.List() {
		pe.ids[m.Name] = m.ID
	}
	return pe, logs
}

// logSink keeps the lines a slog JSON handler writes.
type logSink struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *logSink) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

// strings returns the string values of every log line, decoded.
func (l *logSink) strings(t *testing.T) string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []string
	sc := bufio.NewScanner(bytes.NewReader(l.buf.Bytes()))
	sc.Buffer(nil, 1<<24)
	for sc.Scan() {
		s, err := jsonStrings(sc.Bytes())
		if err != nil {
			t.Fatalf("log line %q: %v", sc.Text(), err)
		}
		out = append(out, s)
	}
	return strings.Join(out, "\n\x00\n")
}

// len is the number of texts recorded so far.
func (r *recorder) len() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.texts)
}

// since returns the texts recorded after the first n, joined.
func (r *recorder) since(n int) string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return strings.Join(r.texts[n:], "\n\x00\n")
}

// jsonStrings returns every key and string value of a JSON document,
// unescaped, one per line: a secret escaped in JSON (its newlines, a '<')
// is found as it was planted.
func jsonStrings(raw []byte) (string, error) {
	var v any
	if err := json.Unmarshal(raw, &v); err != nil {
		return "", err
	}
	var out []string
	var walk func(any)
	walk = func(v any) {
		switch v := v.(type) {
		case string:
			out = append(out, v)
		case []any:
			for _, x := range v {
				walk(x)
			}
		case map[string]any:
			for k, x := range v {
				out = append(out, k)
				walk(x)
			}
		}
	}
	walk(v)
	return strings.Join(out, "\n"), nil
}

// dumpUserRows returns, per table, every text, JSON and text-array value
// of every table in the database, limited to the rows of user uid where
// the table says whose a row is (directly, or through its query, chat,
// project or session); other tables (lookup tables, River's jobs, the
// worker registry) are read whole.
func dumpUserRows(t *testing.T, e *pluginEnv, uid string) map[string]string {
	ctx := t.Context()
	rows, err := e.srv.db.Query(ctx, `SELECT c.table_name, c.column_name, c.data_type,
			(SELECT array_agg(k.column_name::text) FROM information_schema.columns k
			 WHERE k.table_schema = c.table_schema AND k.table_name = c.table_name)
		FROM information_schema.columns c
		JOIN information_schema.tables tb ON tb.table_schema = c.table_schema AND tb.table_name = c.table_name
		WHERE c.table_schema = current_schema() AND tb.table_type = 'BASE TABLE'
		  AND (c.data_type IN ('text', 'character varying', 'json', 'jsonb')
		       OR c.data_type = 'ARRAY' AND c.udt_name IN ('_text', '_varchar'))
		ORDER BY 1, 2`)
	if err != nil {
		t.Fatal(err)
	}
	type column struct {
		table, name, typ string
		all              []string
	}
	cols, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (column, error) {
		var c column
		return c, r.Scan(&c.table, &c.name, &c.typ, &c.all)
	})
	if err != nil {
		t.Fatal(err)
	}
	// Whose a row is, most direct first.
	scopes := []struct{ col, where string }{
		{"user_id", "user_id = $1"},
		{"meta_query_id", "meta_query_id IN (SELECT meta_query_id FROM meta_query WHERE user_id = $1)"},
		{"chat_id", "chat_id IN (SELECT chat_id FROM chat WHERE user_id = $1)"},
		{"project_id", "project_id IN (SELECT project_id FROM project_users WHERE user_id = $1)"},
		{"session_id", "session_id IN (SELECT session_id FROM session WHERE user_id = $1)"},
	}
	out := map[string]string{}
	values := 0
	for _, c := range cols {
		where, args := "true", []any{}
		for _, s := range scopes {
			if slices.Contains(c.all, s.col) {
				where, args = s.where, []any{uid}
				break
			}
		}
		expr := pgx.Identifier{c.name}.Sanitize()
		switch c.typ {
		case "ARRAY":
			expr = "array_to_string(" + expr + ", E'\\n')"
		case "json", "jsonb":
			expr += "::text"
		}
		q := "SELECT " + expr + " FROM " + pgx.Identifier{c.table}.Sanitize() + " WHERE " + where + " AND " +
			pgx.Identifier{c.name}.Sanitize() + " IS NOT NULL"
		vals, err := e.srv.db.Query(ctx, q, args...)
		if err != nil {
			t.Fatalf("%s: %v", q, err)
		}
		strs, err := pgx.CollectRows(vals, pgx.RowTo[string])
		if err != nil {
			t.Fatalf("%s: %v", q, err)
		}
		for _, s := range strs {
			if c.typ == "json" || c.typ == "jsonb" {
				if s, err = jsonStrings([]byte(s)); err != nil {
					t.Fatalf("%s.%s: %v", c.table, c.name, err)
				}
			}
			out[c.table] += s + "\n\x00\n"
			values++
		}
	}
	t.Logf("database: %d values from %d columns of %d tables", values, len(cols), len(out))
	return out
}
