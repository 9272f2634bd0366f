package loadtest

import (
	"context"
	"crypto/md5"
	"encoding/hex"
	"fmt"
	"io"
	"math"
	"slices"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
)

// Kinds of acknowledged rows, in the order the reconciliation lists them.
const (
	KindCompletion    = "completion"     // meta_query and completion_query of a completion request
	KindContext       = "context"        // its context row and the content of its context files
	KindTelemetry     = "telemetry"      // its contextual and behavioural telemetry rows
	KindGeneration    = "generation"     // a completion's or chat answer's generation row
	KindFeedback      = "feedback"       // acceptance and shown_at on the generation
	KindGroundTruth   = "ground_truth"   // a ground_truth row
	KindContextUpdate = "context_update" // a project_context_change row (and the file's final lines)
	KindChat          = "chat"           // a chat query's meta_query and the user's message
)

// Kinds lists every kind.
var Kinds = []string{KindCompletion, KindContext, KindTelemetry, KindGeneration, KindFeedback, KindGroundTruth, KindContextUpdate, KindChat}

// maxExamples is how many ids of missing or mismatched rows a kind keeps.
const maxExamples = 5

// Reconciliation is the check of every acknowledged row against Postgres.
type Reconciliation struct {
	Kinds map[string]*KindResult
}

// KindResult counts one kind: Found rows hold what was sent, Mismatched
// rows are there with other content, Missing rows are not there.
type KindResult struct {
	Acked, Found, Missing, Mismatched int
	MissingIDs, MismatchedIDs         []string // up to maxExamples each
}

// Lost is the number of acknowledged rows missing or mismatched, over all
// kinds.
func (r *Reconciliation) Lost() int {
	n := 0
	for _, k := range r.Kinds {
		n += k.Missing + k.Mismatched
	}
	return n
}

func (r *Reconciliation) add(kind, id string, found, matches bool) {
	k := r.Kinds[kind]
	k.Acked++
	switch {
	case !found:
		k.Missing++
		if len(k.MissingIDs) < maxExamples {
			k.MissingIDs = append(k.MissingIDs, id)
		}
	case !matches:
		k.Mismatched++
		if len(k.MismatchedIDs) < maxExamples {
			k.MismatchedIDs = append(k.MismatchedIDs, id)
		}
	default:
		k.Found++
	}
}

func sum(s string) string {
	h := md5.Sum([]byte(s))
	return hex.EncodeToString(h[:])
}

// Reconcile checks every acknowledged row against Postgres: present, with
// the content that was sent (the texts sent hold nothing the redaction
// rules replace, so the stored text must equal it; text columns are
// compared by md5, computed in Postgres).
func Reconcile(ctx context.Context, pool *pgxpool.Pool, r *Report) (*Reconciliation, error) {
	rec := &Reconciliation{Kinds: map[string]*KindResult{}}
	for _, k := range Kinds {
		rec.Kinds[k] = &KindResult{}
	}
	a := &r.Acked
	if err := reconcileCompletions(ctx, pool, a, rec); err != nil {
		return nil, err
	}
	if err := reconcileGenerations(ctx, pool, a, rec); err != nil {
		return nil, err
	}
	if err := reconcileFeedback(ctx, pool, a, rec); err != nil {
		return nil, err
	}
	if err := reconcileContextUpdates(ctx, pool, a, rec); err != nil {
		return nil, err
	}
	if err := reconcileChats(ctx, pool, a, rec); err != nil {
		return nil, err
	}
	return rec, nil
}

// rows runs a query over ids and calls scan for each row.
func rows(ctx context.Context, pool *pgxpool.Pool, sql string, ids []string, scan func(func(...any) error) error) error {
	rs, err := pool.Query(ctx, sql, ids)
	if err != nil {
		return fmt.Errorf("loadtest: reconcile: %w", err)
	}
	defer rs.Close()
	for rs.Next() {
		if err := scan(rs.Scan); err != nil {
			return fmt.Errorf("loadtest: reconcile: %w", err)
		}
	}
	if err := rs.Err(); err != nil {
		return fmt.Errorf("loadtest: reconcile: %w", err)
	}
	return nil
}

func reconcileCompletions(ctx context.Context, pool *pgxpool.Pool, a *Acked, rec *Reconciliation) error {
	ids := make([]string, len(a.Completions))
	for i, c := range a.Completions {
		ids[i] = c.MetaQueryID
	}
	type mqRow struct {
		typ, user string
		answered  bool
		cq        bool
	}
	mqs := map[string]mqRow{}
	err := rows(ctx, pool, `SELECT m.meta_query_id::text, m.query_type, coalesce(m.user_id::text, ''), m.total_serving_ms IS NOT NULL,
			EXISTS (SELECT 1 FROM completion_query c WHERE c.meta_query_id = m.meta_query_id)
		FROM meta_query m WHERE m.meta_query_id = ANY($1::uuid[])`, ids, func(scan func(...any) error) error {
		var id string
		var r mqRow
		if err := scan(&id, &r.typ, &r.user, &r.answered, &r.cq); err != nil {
			return err
		}
		mqs[id] = r
		return nil
	})
	if err != nil {
		return err
	}
	type ctxRow struct{ prefix, suffix, file string }
	ctxs := map[string]ctxRow{}
	err = rows(ctx, pool, `SELECT meta_query_id::text, md5(prefix), md5(suffix), coalesce(file_name, '')
		FROM context WHERE meta_query_id = ANY($1::uuid[])`, ids, func(scan func(...any) error) error {
		var id string
		var r ctxRow
		if err := scan(&id, &r.prefix, &r.suffix, &r.file); err != nil {
			return err
		}
		ctxs[id] = r
		return nil
	})
	if err != nil {
		return err
	}
	files := map[string]map[string]string{} // query, file name: md5 of the content ("" when none stored)
	err = rows(ctx, pool, `SELECT meta_query_id::text, file_name, coalesce(md5(content), '')
		FROM query_context_file WHERE meta_query_id = ANY($1::uuid[])`, ids, func(scan func(...any) error) error {
		var id, name, content string
		if err := scan(&id, &name, &content); err != nil {
			return err
		}
		if files[id] == nil {
			files[id] = map[string]string{}
		}
		files[id][name] = content
		return nil
	})
	if err != nil {
		return err
	}
	contextual := map[string]Contextual{}
	err = rows(ctx, pool, `SELECT meta_query_id::text, version_id, trigger_type_id, language_id, coalesce(file_path, ''),
			coalesce(caret_line, -1), coalesce(document_char_length, -1), coalesce(relative_document_position, -1)
		FROM contextual_telemetry WHERE meta_query_id = ANY($1::uuid[])`, ids, func(scan func(...any) error) error {
		var id string
		var c Contextual
		var caret, length int32
		if err := scan(&id, &c.VersionID, &c.TriggerTypeID, &c.LanguageID, &c.FilePath, &caret, &length, &c.RelativeDocumentPosition); err != nil {
			return err
		}
		c.CaretLine, c.DocumentCharLength = int64(caret), int64(length)
		contextual[id] = c
		return nil
	})
	if err != nil {
		return err
	}
	behavioral := map[string]Behavioral{}
	err = rows(ctx, pool, `SELECT meta_query_id::text, coalesce(time_since_last_shown, -1), coalesce(time_since_last_accepted, -1),
			coalesce(typing_speed, -1)
		FROM behavioral_telemetry WHERE meta_query_id = ANY($1::uuid[])`, ids, func(scan func(...any) error) error {
		var id string
		var b Behavioral
		if err := scan(&id, &b.TimeSinceLastShown, &b.TimeSinceLastAccepted, &b.TypingSpeed); err != nil {
			return err
		}
		behavioral[id] = b
		return nil
	})
	if err != nil {
		return err
	}
	for _, c := range a.Completions {
		id := c.MetaQueryID
		m, ok := mqs[id]
		rec.add(KindCompletion, id, ok && m.cq, m.typ == "completion" && m.user == c.UserID && m.answered)

		cx, ok := ctxs[id]
		match := ok && cx.prefix == sum(c.Prefix) && cx.suffix == sum(c.Suffix) && cx.file == c.FileName
		stored := files[id]
		for _, f := range c.ContextFiles {
			if f.Content == "" {
				continue // an empty file is not part of the context
			}
			got, named := stored[f.Name]
			if !named || (c.ContextKnown && got != sum(f.Content)) {
				match = false
			}
		}
		rec.add(KindContext, id, ok, match)

		ct, okC := contextual[id]
		bt, okB := behavioral[id]
		rec.add(KindTelemetry, id, okC && okB, sameContextual(ct, c.Contextual) && sameBehavioral(bt, c.Behavioral))
	}
	return nil
}

func near(a, b float64) bool { return math.Abs(a-b) <= 1e-9*math.Max(1, math.Abs(b)) }

func sameContextual(a, b Contextual) bool {
	return a.VersionID == b.VersionID && a.TriggerTypeID == b.TriggerTypeID && a.LanguageID == b.LanguageID && a.FilePath == b.FilePath &&
		a.CaretLine == b.CaretLine && a.DocumentCharLength == b.DocumentCharLength && near(a.RelativeDocumentPosition, b.RelativeDocumentPosition)
}

func sameBehavioral(a, b Behavioral) bool {
	return a.TimeSinceLastShown == b.TimeSinceLastShown && a.TimeSinceLastAccepted == b.TimeSinceLastAccepted && near(a.TypingSpeed, b.TypingSpeed)
}

// genKey names a generation.
func genKey(mq string, model int64) string { return fmt.Sprintf("%s/%d", mq, model) }

func reconcileGenerations(ctx context.Context, pool *pgxpool.Pool, a *Acked, rec *Reconciliation) error {
	var ids []string
	want := map[string]string{}
	var order []string
	add := func(mq string, gs []AckedGeneration) {
		if len(gs) > 0 {
			ids = append(ids, mq)
		}
		for _, g := range gs {
			k := genKey(mq, g.ModelID)
			want[k] = sum(g.Completion)
			order = append(order, k)
		}
	}
	for _, c := range a.Completions {
		add(c.MetaQueryID, c.Generations)
	}
	for _, c := range a.Chats {
		add(c.MetaQueryID, c.Generations)
	}
	got := map[string]string{}
	err := rows(ctx, pool, `SELECT meta_query_id::text, model_id, md5(completion) FROM generation WHERE meta_query_id = ANY($1::uuid[])`, ids,
		func(scan func(...any) error) error {
			var id, text string
			var model int64
			if err := scan(&id, &model, &text); err != nil {
				return err
			}
			got[genKey(id, model)] = text
			return nil
		})
	if err != nil {
		return err
	}
	for _, k := range order {
		g, ok := got[k]
		rec.add(KindGeneration, k, ok, g == want[k])
	}
	return nil
}

func reconcileFeedback(ctx context.Context, pool *pgxpool.Pool, a *Acked, rec *Reconciliation) error {
	ids := make([]string, 0, len(a.Feedback))
	for _, f := range a.Feedback {
		ids = append(ids, f.MetaQueryID)
	}
	type genRow struct {
		accepted bool
		shown    []time.Time
		feedback bool
	}
	gens := map[string]genRow{}
	err := rows(ctx, pool, `SELECT meta_query_id::text, model_id, was_accepted, shown_at, feedback_at IS NOT NULL
		FROM generation WHERE meta_query_id = ANY($1::uuid[])`, ids, func(scan func(...any) error) error {
		var id string
		var model int64
		var g genRow
		if err := scan(&id, &model, &g.accepted, &g.shown, &g.feedback); err != nil {
			return err
		}
		gens[genKey(id, model)] = g
		return nil
	})
	if err != nil {
		return err
	}
	truths := map[string][]string{}
	err = rows(ctx, pool, `SELECT meta_query_id::text, coalesce(model_id, 0), md5(ground_truth) FROM ground_truth WHERE meta_query_id = ANY($1::uuid[])`,
		ids, func(scan func(...any) error) error {
			var id, text string
			var model int64
			if err := scan(&id, &model, &text); err != nil {
				return err
			}
			k := genKey(id, model)
			truths[k] = append(truths[k], text)
			return nil
		})
	if err != nil {
		return err
	}
	for _, f := range a.Feedback {
		k := genKey(f.MetaQueryID, f.ModelID)
		g, ok := gens[k]
		match := g.feedback && g.accepted == f.WasAccepted
		for _, t := range f.ShownAt {
			if !slices.ContainsFunc(g.shown, func(s time.Time) bool { return s.UnixMicro() == t.UnixMicro() }) {
				match = false
			}
		}
		rec.add(KindFeedback, k, ok, match)
		if f.GroundTruth != "" {
			ts, ok := truths[k]
			rec.add(KindGroundTruth, k, ok, slices.Contains(ts, sum(f.GroundTruth)))
		}
	}
	return nil
}

func reconcileContextUpdates(ctx context.Context, pool *pgxpool.Pool, a *Acked, rec *Reconciliation) error {
	projects := map[string]bool{}
	var ids []string
	for _, c := range a.ContextUpdates {
		if !projects[c.ProjectID] {
			projects[c.ProjectID] = true
			ids = append(ids, c.ProjectID)
		}
	}
	type changeRow struct {
		seq        int32
		typ        string
		start, end int32
		lines      []string
	}
	logs := map[string][]changeRow{} // project/file: its changes in order
	err := rows(ctx, pool, `SELECT project_id::text, file_name, seq, change_type, start_line, end_line, new_lines
		FROM project_context_change WHERE project_id = ANY($1::uuid[]) ORDER BY project_id, file_name, seq`, ids,
		func(scan func(...any) error) error {
			var project, file string
			var c changeRow
			if err := scan(&project, &file, &c.seq, &c.typ, &c.start, &c.end, &c.lines); err != nil {
				return err
			}
			logs[project+"/"+file] = append(logs[project+"/"+file], c)
			return nil
		})
	if err != nil {
		return err
	}
	finals := map[string][]string{}
	err = rows(ctx, pool, `SELECT project_id::text, file_name, lines FROM project_context_file WHERE project_id = ANY($1::uuid[])`, ids,
		func(scan func(...any) error) error {
			var project, file string
			var lines []string
			if err := scan(&project, &file, &lines); err != nil {
				return err
			}
			finals[project+"/"+file] = lines
			return nil
		})
	if err != nil {
		return err
	}
	// The acknowledged changes of a file must appear in its change log in
	// the order they were sent (changes whose answer never came may lie
	// between them).
	next := map[string]int{}
	for i, c := range a.ContextUpdates {
		k := c.ProjectID + "/" + c.FileName
		log := logs[k]
		found, match := false, false
		for j := next[k]; j < len(log); j++ {
			l := log[j]
			if l.typ == c.ChangeType && int(l.start) == c.StartLine && int(l.end) == c.EndLine {
				found, match = true, slices.Equal(l.lines, c.NewLines)
				next[k] = j + 1
				break
			}
		}
		if c.Final {
			got, ok := finals[k]
			found = found && ok
			match = match && slices.Equal(got, c.Lines)
		}
		rec.add(KindContextUpdate, fmt.Sprintf("%s#%d", k, i), found, match)
	}
	return nil
}

func reconcileChats(ctx context.Context, pool *pgxpool.Pool, a *Acked, rec *Reconciliation) error {
	ids := make([]string, len(a.Chats))
	for i, c := range a.Chats {
		ids[i] = c.MetaQueryID
	}
	type chatRow struct {
		chat, user string
		messages   []string // md5 of the user messages
	}
	got := map[string]*chatRow{}
	err := rows(ctx, pool, `SELECT m.meta_query_id::text, coalesce(m.chat_id::text, ''), coalesce(m.user_id::text, ''), coalesce(md5(cm.content), '')
		FROM meta_query m LEFT JOIN chat_message cm ON cm.meta_query_id = m.meta_query_id AND cm.role = 'user'
		WHERE m.meta_query_id = ANY($1::uuid[]) AND m.query_type = 'chat'`, ids, func(scan func(...any) error) error {
		var id, chat, user, msg string
		if err := scan(&id, &chat, &user, &msg); err != nil {
			return err
		}
		r := got[id]
		if r == nil {
			r = &chatRow{chat: chat, user: user}
			got[id] = r
		}
		if msg != "" {
			r.messages = append(r.messages, msg)
		}
		return nil
	})
	if err != nil {
		return err
	}
	for _, c := range a.Chats {
		r, ok := got[c.MetaQueryID]
		match := ok && r.chat == c.ChatID && r.user == c.UserID && slices.Equal(r.messages, []string{sum(c.Message)})
		rec.add(KindChat, c.MetaQueryID, ok, match)
	}
	return nil
}

// Write prints the reconciliation as a markdown table, with examples of
// missing and mismatched rows.
func (r *Reconciliation) Write(w io.Writer) {
	fmt.Fprintln(w, "| kind | acknowledged | found | missing | mismatched |")
	fmt.Fprintln(w, "|---|---|---|---|---|")
	total := KindResult{}
	for _, name := range Kinds {
		k := r.Kinds[name]
		fmt.Fprintf(w, "| %s | %d | %d | %d | %d |\n", name, k.Acked, k.Found, k.Missing, k.Mismatched)
		total.Acked += k.Acked
		total.Found += k.Found
		total.Missing += k.Missing
		total.Mismatched += k.Mismatched
	}
	fmt.Fprintf(w, "| **all** | %d | %d | %d | %d |\n", total.Acked, total.Found, total.Missing, total.Mismatched)
	for _, name := range Kinds {
		k := r.Kinds[name]
		if len(k.MissingIDs) > 0 {
			fmt.Fprintf(w, "missing %s: %v\n", name, k.MissingIDs)
		}
		if len(k.MismatchedIDs) > 0 {
			fmt.Fprintf(w, "mismatched %s: %v\n", name, k.MismatchedIDs)
		}
	}
}
