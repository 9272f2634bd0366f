package server

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
	"encoding/csv"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/code4me/code4me/internal/eval"
)

// wantExportColumns are the export's documented columns, in order.
var wantExportColumns = []string{
	"schema", "study_id", "arm_name", "arm_id", "config_id", "unit_key", "participant", "session", "meta_query_id",
	"requested_at", "model_id", "model_name", "shown", "accepted", "confidence", "total_serving_ms", "generation_time_ms",
	"tokens_generated", "survival_30s", "survival_2m", "survival_5m", "survival_10m", "exact_match", "edit_similarity",
	"language_id", "trigger",
}

// pseudonym is the documented pseudonym of id in s's study: hex
// HMAC-SHA256 keyed by the seed (8 bytes, big-endian) and the study id.
func (s *studySeed) pseudonym(id uuid.UUID) string {
	key := binary.BigEndian.AppendUint64(nil, uint64(s.seed))
	mac := hmac.New(sha256.New, append(key, s.id[:]...))
	mac.Write(id[:])
	return hex.EncodeToString(mac.Sum(nil))
}

// wantExport is the export's rows computed from the seeded queries, each
// a column → value map as JSON decodes it.
func (s *studySeed) wantExport() []map[string]any {
	var qs []*studyQuery
	for _, q := range s.queries {
		if s.exposed(q) {
			qs = append(qs, q)
		}
	}
	sort.SliceStable(qs, func(i, j int) bool {
		if !qs[i].at.Equal(qs[j].at) {
			return qs[i].at.Before(qs[j].at)
		}
		return bytes.Compare(qs[i].id[:], qs[j].id[:]) < 0
	})
	num := func(v float64) any { return v }
	var rows []map[string]any
	for _, q := range qs {
		user := s.pseudonym(s.users[q.user])
		base := map[string]any{"schema": "code4me.study-export.v1", "study_id": s.id.String(), "arm_name": s.armNames[q.arm],
			"arm_id": num(float64(s.armIDs[q.arm])), "config_id": num(1), "participant": user, "session": nil,
			"meta_query_id": q.id.String(), "requested_at": q.at.UTC().Format(time.RFC3339Nano), "total_serving_ms": nil,
			"language_id": nil, "trigger": nil}
		for _, c := range wantExportColumns {
			if _, ok := base[c]; !ok {
				base[c] = nil
			}
		}
		if q.session != nil {
			base["session"] = s.pseudonym(*q.session)
		}
		switch {
		case s.unit == "user" || (s.unit == "session" && q.session == nil):
			base["unit_key"] = user
		case s.unit == "session":
			base["unit_key"] = base["session"]
		default:
			base["unit_key"] = s.pseudonym(q.id)
		}
		if q.serving != nil {
			base["total_serving_ms"] = *q.serving
		}
		if q.lang != nil {
			base["language_id"] = num(float64(*q.lang))
			base["trigger"] = []string{"manual", "auto", "idle"}[*q.trigger-1]
		}
		gens := slices.Clone(q.gens)
		sort.Slice(gens, func(i, j int) bool { return s.models[gens[i].model] < s.models[gens[j].model] })
		if len(gens) == 0 {
			rows = append(rows, base)
		}
		for _, g := range gens {
			r := map[string]any{}
			for k, v := range base {
				r[k] = v
			}
			r["model_id"], r["model_name"] = num(float64(s.models[g.model])), s.mnames[g.model]
			r["shown"], r["accepted"] = g.shown(), g.acceptedGen()
			r["generation_time_ms"] = num(float64(g.genMS))
			if g.conf != nil {
				r["confidence"] = *g.conf
			}
			if g.tokens != nil {
				r["tokens_generated"] = num(float64(*g.tokens))
			}
			if tr := q.applying(g); len(tr) > 0 {
				latest := tr[len(tr)-1].text
				r["exact_match"], r["edit_similarity"] = eval.ExactMatch(g.completion, latest), eval.EditSimilarity(g.completion, latest)
			}
			for k, h := range []time.Duration{30 * time.Second, 2 * time.Minute, 5 * time.Minute, 10 * time.Minute} {
				if v, ok := q.survivalWant(g, h); ok {
					r[[]string{"survival_30s", "survival_2m", "survival_5m", "survival_10m"}[k]] = v
				}
			}
			rows = append(rows, r)
		}
	}
	return rows
}

// parseJSONL reads the export's lines, checking each one's keys and order.
func parseJSONL(t *testing.T, raw []byte) []map[string]any {
	t.Helper()
	var rows []map[string]any
	for i, line := range strings.Split(strings.TrimSuffix(string(raw), "\n"), "\n") {
		if line == "" {
			continue
		}
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatalf("line %d: %v: %s", i+1, err, line)
		}
		// The keys come in the columns' order.
		dec := json.NewDecoder(strings.NewReader(line))
		dec.Token()
		var keys []string
		for dec.More() {
			k, _ := dec.Token()
			keys = append(keys, k.(string))
			var skip json.RawMessage
			dec.Decode(&skip)
		}
		if !slices.Equal(keys, wantExportColumns) {
			t.Fatalf("line %d: keys %v", i+1, keys)
		}
		rows = append(rows, m)
	}
	return rows
}

// csvForm is a JSON value as the CSV writes it.
func csvForm(v any) string {
	switch x := v.(type) {
	case nil:
		return ""
	case float64:
		return strconv.FormatFloat(x, 'g', -1, 64)
	case bool:
		return strconv.FormatBool(x)
	}
	return v.(string)
}

// checkNoSecrets fails when the export holds an email, a user id or seeded
// code text.
func (s *studySeed) checkNoSecrets(t *testing.T, what string, raw []byte) {
	t.Helper()
	text := strings.ToLower(string(raw))
	if strings.Contains(text, strings.ToLower(studyMarker)) || strings.Contains(text, "@example.com") {
		t.Errorf("%s holds seeded emails or code", what)
	}
	for i, u := range s.users {
		if strings.Contains(text, u.String()) || strings.Contains(text, strings.ReplaceAll(u.String(), "-", "")) {
			t.Errorf("%s holds user %d's id", what, i)
		}
		for _, sess := range s.sessions[i] {
			if strings.Contains(text, sess.String()) {
				t.Errorf("%s holds a session id", what)
			}
		}
	}
	for _, q := range s.queries {
		for _, g := range q.gens {
			if len(g.completion) > 3 && strings.Contains(string(raw), strconv.Quote(g.completion)) {
				t.Errorf("%s holds completion text %q", what, g.completion)
			}
		}
	}
}

// TestStudyExport exports a seeded study, in small pages, as JSON Lines
// and as CSV, and compares every row with the one computed from the
// seeded rows: one per exposed query and model, or one with null
// generation columns, in (requested_at, meta_query_id, model_id) order;
// pseudonyms are the documented HMAC of the ids, the same throughout the
// study and different in another study of the same users; no email, user
// or session id, or code text is exported.
func TestStudyExport(t *testing.T) {
	old := studyExportPage
	studyExportPage = 7
	t.Cleanup(func() { studyExportPage = old })
	e := newEnv(t, nil)
	admin, _ := e.newAdmin()
	s := newStudySeed(t, e, admin, "session", 4, "control", "treatment", "empty")
	s.seedRandom(rand.New(rand.NewPCG(3, 4)), 90, []int{0, 1})
	want := s.wantExport()
	if len(want) < 60 {
		t.Fatalf("only %d rows", len(want))
	}

	r := admin.expect("GET", "/api/analytics/studies/"+s.id.String()+"/export", nil, 200)
	if ct := r.header.Get("Content-Type"); !strings.HasPrefix(ct, "application/x-ndjson") {
		t.Errorf("Content-Type %q", ct)
	}
	if r.header.Get("X-Code4me-Export-Schema") != "code4me.study-export.v1" ||
		!strings.Contains(r.header.Get("Content-Disposition"), "code4me.study-export.v1.jsonl") {
		t.Errorf("headers %v", r.header)
	}
	got := parseJSONL(t, r.raw)
	if len(got) != len(want) {
		t.Fatalf("%d JSON lines, want %d", len(got), len(want))
	}
	for i := range want {
		for _, c := range wantExportColumns {
			g, w := got[i][c], want[i][c]
			if gf, ok := g.(float64); ok {
				if wf, ok := w.(float64); ok && (gf-wf) < 1e-12 && (wf-gf) < 1e-12 {
					continue
				}
			}
			if fmt.Sprint(g) != fmt.Sprint(w) {
				t.Errorf("row %d (%v): %s = %v, want %v", i, want[i]["meta_query_id"], c, g, w)
			}
		}
	}
	s.checkNoSecrets(t, "jsonl", r.raw)

	c := admin.expect("GET", "/api/analytics/studies/"+s.id.String()+"/export?format=csv", nil, 200)
	if ct := c.header.Get("Content-Type"); !strings.HasPrefix(ct, "text/csv") {
		t.Errorf("Content-Type %q", ct)
	}
	recs, err := csv.NewReader(bytes.NewReader(c.raw)).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(recs[0], wantExportColumns) {
		t.Fatalf("CSV header %v", recs[0])
	}
	if len(recs)-1 != len(want) {
		t.Fatalf("%d CSV rows, want %d", len(recs)-1, len(want))
	}
	for i, rec := range recs[1:] {
		for j, col := range wantExportColumns {
			if rec[j] != csvForm(got[i][col]) {
				t.Errorf("CSV row %d: %s = %q, JSON has %v", i, col, rec[j], got[i][col])
			}
		}
	}
	s.checkNoSecrets(t, "csv", c.raw)

	// A second study of the same users gives them other pseudonyms.
	s2 := newStudySeed(t, e, admin, "user", 0, "only")
	s2.users, s2.sessions = s.users, s.sessions
	for u := range s.users {
		at := s2.from.Add(time.Duration(u) * time.Minute)
		s2.insert(&studyQuery{arm: 0, user: u, session: &s.sessions[u][0], at: at})
	}
	rows2 := parseJSONL(t, admin.expect("GET", "/api/analytics/studies/"+s2.id.String()+"/export", nil, 200).raw)
	if len(rows2) != len(s.users) {
		t.Fatalf("second study: %d rows", len(rows2))
	}
	first := map[string]bool{}
	for _, r := range got {
		first[r["participant"].(string)] = true
		if r["session"] != nil {
			first[r["session"].(string)] = true
		}
	}
	for u, r := range rows2 {
		if r["participant"] != s2.pseudonym(s.users[u]) || r["unit_key"] != r["participant"] {
			t.Errorf("second study, user %d: participant %v", u, r["participant"])
		}
		if first[r["participant"].(string)] || first[r["session"].(string)] {
			t.Errorf("user %d has the same pseudonym in both studies", u)
		}
	}
	// Within the first study, each user has one pseudonym, the same in a
	// second export.
	again := parseJSONL(t, admin.expect("GET", "/api/analytics/studies/"+s.id.String()+"/export", nil, 200).raw)
	if fmt.Sprint(again) != fmt.Sprint(got) {
		t.Error("a second export differs")
	}
	if len(first) > 3*len(s.users) {
		t.Errorf("%d pseudonyms for %d users and their %d sessions", len(first), len(s.users), 2*len(s.users))
	}
}

// TestStudyExportEmpty: a study without exposed queries exports no rows,
// and a CSV of only its header.
func TestStudyExportEmpty(t *testing.T) {
	e := newEnv(t, nil)
	admin, _ := e.newAdmin()
	s := newStudySeed(t, e, admin, "request", 1, "a", "b")
	if r := admin.expect("GET", "/api/analytics/studies/"+s.id.String()+"/export", nil, 200); len(r.raw) != 0 {
		t.Errorf("jsonl: %q", r.raw)
	}
	r := admin.expect("GET", "/api/analytics/studies/"+s.id.String()+"/export?format=csv", nil, 200)
	if string(r.raw) != strings.Join(wantExportColumns, ",")+"\n" {
		t.Errorf("csv: %q", r.raw)
	}
}
