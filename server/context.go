package server

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"math"
	"slices"
	"strings"
	"time"

	"github.com/gofiber/fiber/v2"
	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/code4me/code4me/engine"
	"github.com/code4me/code4me/internal/db"
	"github.com/code4me/code4me/internal/redact"
	"github.com/code4me/code4me/models"
)

// The project's multi-file context lives in Postgres:
// project_context_file holds each file's current, redacted lines and the
// number of changes applied to it; project_context_change the redacted
// change log. Lines are strings and stay strings (Code4me V2 turned a line such as
// "1" or "null" into a number or null, and every later update failed).

// fileChange is FileContextChangeData.
type fileChange struct {
	ChangeType string   `json:"change_type"`
	StartLine  int      `json:"start_line"`
	EndLine    int      `json:"end_line"`
	NewLines   []string `json:"new_lines"`
}

// maxLine is the largest start or end line a change may name; a larger one
// is a 422. A change to a file not yet in the context pads it with empty
// lines up to its end line, so the bound is also what one request can make
// the server allocate (16 MiB of line headers), and it keeps line numbers
// inside the int4 columns they are stored in.
const maxLine = 1 << 20

// fileUpdate is the changes of one file, in request order.
type fileUpdate struct {
	file    string
	changes []fileChange
}

// parseContextUpdates reads UpdateMultiFileContext, keeping the files in
// the order the client sent them.
func parseContextUpdates(f *fields) []fileUpdate {
	raw, ok := f.get("context_updates", true)
	if !ok {
		return nil
	}
	d := json.NewDecoder(bytes.NewReader(raw))
	if t, err := d.Token(); err != nil || t != json.Delim('{') {
		f.add("dict_type", "context_updates", "Input should be a valid dictionary", rawInput(raw), nil)
		return nil
	}
	var out []fileUpdate
	for d.More() {
		t, err := d.Token()
		if err != nil {
			f.add("dict_type", "context_updates", "Input should be a valid dictionary", rawInput(raw), nil)
			return nil
		}
		name := t.(string)
		var item json.RawMessage
		if err := d.Decode(&item); err != nil {
			f.add("dict_type", "context_updates", "Input should be a valid dictionary", rawInput(raw), nil)
			return nil
		}
		loc := append(f.at("context_updates"), name)
		var list []json.RawMessage
		if err := json.Unmarshal(item, &list); err != nil {
			*f.errs = append(*f.errs, fieldError{Type: "list_type", Loc: loc, Msg: "Input should be a valid list", Input: rawInput(item)})
			continue
		}
		up := fileUpdate{file: name}
		for i, el := range list {
			sub := &fields{loc: append(slices.Clone(loc), i), errs: f.errs}
			if err := json.Unmarshal(el, &sub.raw); err != nil || sub.raw == nil {
				*f.errs = append(*f.errs, fieldError{Type: "model_type", Loc: sub.loc,
					Msg: "Input should be a valid dictionary or instance of the model", Input: rawInput(el)})
				continue
			}
			sub.input = rawInput(el)
			var ch fileChange
			if typ, ok := sub.str("change_type", true, 0, 0); ok {
				switch typ {
				case "update", "insert", "remove":
					ch.ChangeType = typ
				default:
					sub.add("literal_error", "change_type", "Input should be 'update', 'insert' or 'remove'", typ,
						map[string]any{"expected": "'update', 'insert' or 'remove'"})
				}
			}
			start, _ := sub.integerIn("start_line", true, 0, maxLine)
			end, _ := sub.integerIn("end_line", true, 0, maxLine)
			ch.StartLine, ch.EndLine = int(start), int(end)
			ch.NewLines = sub.strList("new_lines", false)
			up.changes = append(up.changes, ch)
		}
		out = append(out, up)
	}
	return out
}

// strList reads a list of strings (nil when absent).
func (f *fields) strList(name string, required bool) []string {
	raw, ok := f.get(name, required)
	if !ok {
		return nil
	}
	var list []json.RawMessage
	if err := json.Unmarshal(raw, &list); err != nil {
		f.add("list_type", name, "Input should be a valid list", rawInput(raw), nil)
		return nil
	}
	out := make([]string, 0, len(list))
	for i, el := range list {
		var s string
		// null is no string (json.Unmarshal would leave s empty).
		if err := json.Unmarshal(el, &s); err != nil || string(el) == "null" {
			*f.errs = append(*f.errs, fieldError{Type: "string_type", Loc: append(f.at(name), i),
				Msg: "Input should be a valid string", Input: rawInput(el)})
			continue
		}
		out = append(out, s)
	}
	return out
}

// applyChanges applies one file's changes as Code4me V2 did: sorted by
// start line descending (stable), with Python slice semantics (0-based,
// end-exclusive, out-of-range indices clamp). A new file starts as as many
// empty lines as the largest end line of its non-insert changes.
func applyChanges(lines []string, exists bool, changes []fileChange) []string {
	out, _ := applyChangesOrigin(lines, exists, changes)
	return out
}

// lineOrigin says where a line of a changed file came from: line off of
// changes[change], or (change -1) the file as it was.
type lineOrigin struct{ change, off int }

// applyChangesOrigin is applyChanges that also returns, for each line of
// the result, the change that wrote it.
func applyChangesOrigin(lines []string, exists bool, changes []fileChange) ([]string, []lineOrigin) {
	if !exists {
		n := 0
		for _, c := range changes {
			if c.ChangeType != "insert" {
				n = max(n, c.EndLine)
			}
		}
		lines = make([]string, n)
	} else {
		lines = slices.Clone(lines)
	}
	origin := make([]lineOrigin, len(lines))
	for i := range origin {
		origin[i] = lineOrigin{-1, i}
	}
	order := make([]int, len(changes))
	for i := range order {
		order[i] = i
	}
	slices.SortStableFunc(order, func(a, b int) int { return changes[b].StartLine - changes[a].StartLine })
	for _, ci := range order {
		c := changes[ci]
		start := min(c.StartLine, len(lines))
		end := min(max(c.EndLine, start), len(lines))
		added := make([]lineOrigin, len(c.NewLines))
		for i := range added {
			added[i] = lineOrigin{ci, i}
		}
		switch c.ChangeType {
		case "update":
			lines = slices.Concat(lines[:start], c.NewLines, lines[end:])
			origin = slices.Concat(origin[:start], added, origin[end:])
		case "insert":
			lines = slices.Concat(lines[:start], c.NewLines, lines[start:])
			origin = slices.Concat(origin[:start], added, origin[start:])
		case "remove":
			lines = slices.Concat(lines[:start], lines[end:])
			origin = slices.Concat(origin[:start], origin[end:])
		}
	}
	return lines, origin
}

// redactChangeLog makes the change log as redacted as the file: each line
// a change wrote that is still in the file takes the file's redacted line
// (redacted as a whole, so a secret sent one line per change, such as a
// private key, is found), unless redacting the change on its own found
// more. Lines no longer in the file keep their redaction on their own.
func redactChangeLog(changes []fileChange, raw []string, origin []lineOrigin, redacted []string) {
	for i, o := range origin {
		if o.change < 0 || redacted[i] == raw[i] {
			continue
		}
		ch := changes[o.change]
		if o.off < len(ch.NewLines) && ch.NewLines[o.off] == pgText(raw[i]) {
			ch.NewLines[o.off] = redacted[i]
		}
	}
}

// redactLines redacts lines as one text, so secrets that span lines (a
// private-key block) are found, and keeps the number of lines: a secret
// that covered several lines becomes its placeholder followed by empty
// lines, so later line-numbered changes from the editor still land on the
// right lines.
func (s *Server) redactLines(ctx context.Context, lines []string) []string {
	if len(lines) == 0 {
		return lines
	}
	for i, l := range lines {
		lines[i] = pgText(l)
	}
	text := strings.Join(lines, "\n")
	out, findings := s.plugin.redactor.Cached(ctx, text)
	if len(findings) == 0 {
		return lines
	}
	red := strings.Split(out, "\n")
	if out == redact.Incomplete {
		red = []string{redact.Incomplete}
	}
	if len(red) == len(lines) {
		return red
	}
	// Keep the lines both sides share at the start and end; pad the changed
	// middle with empty lines.
	pre := 0
	for pre < len(red) && pre < len(lines) && red[pre] == lines[pre] {
		pre++
	}
	suf := 0
	for suf < len(red)-pre && suf < len(lines)-pre && red[len(red)-1-suf] == lines[len(lines)-1-suf] {
		suf++
	}
	mid := red[pre : len(red)-suf]
	want := len(lines) - pre - suf
	res := make([]string, 0, len(lines))
	res = append(res, red[:pre]...)
	if len(mid) > want { // cannot happen (redaction removes newlines only); fail closed
		mid = []string{strings.Join(mid, " ")}
	}
	res = append(res, mid...)
	for range want - len(mid) {
		res = append(res, "")
	}
	return append(res, red[len(red)-suf:]...)
}

// contextUpdate handles POST /api/completion/multi-file-context/update.
func (s *Server) contextUpdate(c *fiber.Ctx) error {
	p := principal(c)
	f, err := jsonBody(c)
	if err != nil {
		return err
	}
	updates := parseContextUpdates(f)
	if err := f.err(); err != nil {
		return err
	}
	data, err := s.updateContext(c.UserContext(), p, updates)
	if err != nil {
		return pipelineError(err, MsgMultiFileContextUpdateError) // 413, 422 past the bounds
	}
	return c.JSON(fiber.Map{"message": MsgMultiFileContextUpdate, "data": data})
}

// updateContext applies updates to the project's context in one
// transaction (serialised per project) and returns the whole context.
func (s *Server) updateContext(ctx context.Context, p *Principal, updates []fileUpdate) (map[string][]string, error) {
	// Redact outside the transaction: it is the slow part.
	type prepared struct {
		fileUpdate
		redactedChanges []fileChange
	}
	prep := make([]prepared, len(updates))
	for i, u := range updates {
		prep[i].fileUpdate = u
		for _, ch := range u.changes {
			ch.NewLines = s.redactLines(ctx, ch.NewLines)
			prep[i].redactedChanges = append(prep[i].redactedChanges, ch)
		}
	}
	err := db.WithTx(ctx, s.db, func(tx pgx.Tx) error {
		if err := s.q.ProjectContextLock(ctx, tx, p.ProjectID.String()); err != nil {
			return err
		}
		names := make([]string, len(prep))
		for i, u := range prep {
			names[i] = u.file
		}
		rows, err := s.q.ProjectContextFileGetMany(ctx, tx, models.ProjectContextFileGetManyParams{ProjectID: p.ProjectID, FileNames: names})
		if err != nil {
			return err
		}
		type state struct {
			lines  []string
			count  int32
			exists bool
		}
		files := map[string]*state{}
		written := make(map[string][]string, len(prep)) // each file's new lines
		for _, r := range rows {
			files[r.FileName] = &state{lines: r.Lines, count: r.ChangeCount, exists: len(r.Lines) > 0}
		}
		for _, u := range prep {
			st := files[u.file]
			if st == nil {
				st = &state{}
				files[u.file] = st
			}
			raw, origin := applyChangesOrigin(st.lines, st.exists, u.changes)
			lines := s.redactLines(ctx, slices.Clone(raw))
			redactChangeLog(u.redactedChanges, raw, origin, lines)
			var log []models.ProjectContextChangeCreateParams
			for _, ch := range u.redactedChanges {
				st.count++
				log = append(log, models.ProjectContextChangeCreateParams{ProjectID: p.ProjectID, FileName: u.file, Seq: st.count,
					ChangeType: ch.ChangeType, StartLine: int32(ch.StartLine), EndLine: int32(ch.EndLine), NewLines: nonNil(ch.NewLines)})
			}
			st.lines, st.exists = lines, len(lines) > 0
			// An emptied file keeps its row (with no lines) so its change
			// log stays numbered; it leaves the context.
			if err := s.q.ProjectContextFileUpsert(ctx, tx, models.ProjectContextFileUpsertParams{
				ProjectID: p.ProjectID, FileName: u.file, Lines: nonNil(lines), ChangeCount: st.count,
				SizeBytes: int32(min(contextSize(lines), math.MaxInt32))}); err != nil {
				return err
			}
			written[u.file] = lines
			if len(log) > 0 {
				if _, err := s.q.ProjectContextChangeCreate(ctx, tx, log); err != nil {
					return err
				}
			}
		}
		// Past a bound the transaction rolls back: nothing is stored.
		if err := s.checkContextBounds(ctx, tx, p.ProjectID, written); err != nil {
			return err
		}
		return s.storeChunks(ctx, tx, p.ProjectID, written) // retrieval.go
	})
	if err != nil {
		return nil, fmt.Errorf("update multi-file context: %w", err)
	}
	// Committed: cached copies of the old context are no longer used.
	if err := s.tokens.BumpContextVersion(ctx, p.ProjectID); err != nil {
		s.log.Warn("multi-file context: "+err.Error(), slog.String("project_id", p.ProjectID.String()))
	}
	all, err := s.q.ProjectContextFileListAll(ctx, s.db, p.ProjectID)
	if err != nil {
		return nil, fmt.Errorf("list multi-file context: %w", err)
	}
	out := make(map[string][]string, len(all))
	for _, r := range all {
		if len(r.Lines) > 0 {
			out[r.FileName] = r.Lines
		}
	}
	return out, nil
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

// contextFile is one file of the multi-file context a query used.
type contextFile struct {
	name        string
	changeIndex int32
	content     string // redacted (files are stored redacted)
}

// selectContext picks the context files of a request (pick) from the
// project's context (projectContext; version is the caller's context
// version, "" unknown). Empty files are never part of it.
func (s *Server) selectContext(ctx context.Context, projectID uuid.UUID, version, current string, want []string) ([]contextFile, error) {
	if len(want) == 0 {
		return nil, nil
	}
	all, err := s.projectContext(ctx, projectID, version)
	if err != nil {
		return nil, err
	}
	return pick(all, current, want), nil
}

// redactChunks redacts context a client sent with its request, as
// context files: names and text redacted, in the client's order.
func (s *Server) redactChunks(ctx context.Context, in []engine.Chunk) []contextFile {
	out := make([]contextFile, 0, len(in))
	for _, c := range in {
		name, _ := s.plugin.redactor.Text(ctx, pgText(c.Path))
		text, _ := s.plugin.redactor.Text(ctx, pgText(c.Text))
		out = append(out, contextFile{name: name, content: text})
	}
	return out
}

// chunks turns context files into engine chunks with their real names.
func chunks(files []contextFile) []engine.Chunk {
	out := make([]engine.Chunk, len(files))
	for i, f := range files {
		out[i] = engine.Chunk{Path: f.name, Text: f.content}
	}
	return out
}

// msSince is the time since t in milliseconds.
func msSince(t time.Time) float64 { return float64(time.Since(t).Microseconds()) / 1000 }
