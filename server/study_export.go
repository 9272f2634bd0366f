package server

import (
	"bufio"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
	"encoding/csv"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"hash"
	"log/slog"
	"strconv"
	"time"

	"github.com/gofiber/fiber/v2"
	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/code4me/code4me/internal/eval"
	"github.com/code4me/code4me/models"
)

// The study export (admin only): GET /api/analytics/studies/{study_id}/export
// ?format=jsonl|csv answers one row per exposed completion query and model
// (the queries of the study results: its arms', in its window), in
// (requested_at, meta_query_id, model_id) order; a query without a
// generation is one row whose generation columns are null. Rows carry
// pseudonyms, never a user's id, email or code: participant, session and
// unit_key are hex HMAC-SHA256s of the ids, keyed by the study's seed and
// id (studyPseudonyms). The layout is versioned: every row's schema column
// and the X-Code4me-Export-Schema header name it (studyExportSchema). The
// columns are documented in docs/research.md ("Study export").

// studyExportSchema names the export's layout. It changes when a column
// is removed, renamed or changes meaning; a column added at the end keeps
// it.
const studyExportSchema = "code4me.study-export.v1"

// studyExportTimeout bounds the whole export, writes to a slow client
// included.
const studyExportTimeout = 30 * time.Minute

// studyExportPage is how many queries one database round trip reads (a
// variable so that tests can make pages small).
var studyExportPage int32 = 500

// studyExportColumns are the export's columns, in order; studyExportRow's
// JSON keys are the same, in the same order.
var studyExportColumns = []string{
	"schema", "study_id", "arm_name", "arm_id", "config_id", "unit_key", "participant", "session", "meta_query_id",
	"requested_at", "model_id", "model_name", "shown", "accepted", "confidence", "total_serving_ms", "generation_time_ms",
	"tokens_generated", "survival_30s", "survival_2m", "survival_5m", "survival_10m", "exact_match", "edit_similarity",
	"language_id", "trigger",
}

// studyExportRow is one row of the export.
type studyExportRow struct {
	Schema           string    `json:"schema"`
	StudyID          uuid.UUID `json:"study_id"`
	ArmName          string    `json:"arm_name"`
	ArmID            int64     `json:"arm_id"`
	ConfigID         int64     `json:"config_id"`
	UnitKey          *string   `json:"unit_key"`
	Participant      *string   `json:"participant"`
	Session          *string   `json:"session"`
	MetaQueryID      uuid.UUID `json:"meta_query_id"`
	RequestedAt      time.Time `json:"requested_at"`
	ModelID          *int64    `json:"model_id"`
	ModelName        *string   `json:"model_name"`
	Shown            *bool     `json:"shown"`
	Accepted         *bool     `json:"accepted"`
	Confidence       *float64  `json:"confidence"`
	TotalServingMS   *float64  `json:"total_serving_ms"`
	GenerationTimeMS *int32    `json:"generation_time_ms"`
	TokensGenerated  *int32    `json:"tokens_generated"`
	Survival30s      *float64  `json:"survival_30s"`
	Survival2m       *float64  `json:"survival_2m"`
	Survival5m       *float64  `json:"survival_5m"`
	Survival10m      *float64  `json:"survival_10m"`
	ExactMatch       *bool     `json:"exact_match"`
	EditSimilarity   *float64  `json:"edit_similarity"`
	LanguageID       *int64    `json:"language_id"`
	Trigger          *string   `json:"trigger"`
}

// values are the row's columns in studyExportColumns order.
func (r *studyExportRow) values() []any {
	return []any{r.Schema, r.StudyID, r.ArmName, r.ArmID, r.ConfigID, r.UnitKey, r.Participant, r.Session, r.MetaQueryID,
		r.RequestedAt, r.ModelID, r.ModelName, r.Shown, r.Accepted, r.Confidence, r.TotalServingMS, r.GenerationTimeMS,
		r.TokensGenerated, r.Survival30s, r.Survival2m, r.Survival5m, r.Survival10m, r.ExactMatch, r.EditSimilarity,
		r.LanguageID, r.Trigger}
}

// csvValue is one CSV field: null is the empty field, times are RFC 3339
// in UTC, floats the shortest text that reads back the same.
func csvValue(v any) string {
	switch x := v.(type) {
	case string:
		return x
	case int64:
		return strconv.FormatInt(x, 10)
	case uuid.UUID:
		return x.String()
	case time.Time:
		return x.UTC().Format(time.RFC3339Nano)
	case *string:
		if x != nil {
			return *x
		}
	case *int64:
		if x != nil {
			return strconv.FormatInt(*x, 10)
		}
	case *int32:
		if x != nil {
			return strconv.FormatInt(int64(*x), 10)
		}
	case *float64:
		if x != nil {
			return strconv.FormatFloat(*x, 'g', -1, 64)
		}
	case *bool:
		if x != nil {
			return strconv.FormatBool(*x)
		}
	default:
		panic(fmt.Sprintf("study export: no CSV form for %T", v))
	}
	return ""
}

// studyPseudonyms makes the export's pseudonyms: the hex HMAC-SHA256 of
// an id's 16 bytes, keyed by the study's seed (8 bytes, big-endian) and
// id. The same id gives the same pseudonym throughout a study's exports,
// and unrelated ones in another study. Without the seed, which only
// admins can read, a pseudonym cannot be traced back to an id.
type studyPseudonyms struct{ mac hash.Hash }

func newStudyPseudonyms(seed int64, study uuid.UUID) *studyPseudonyms {
	key := binary.BigEndian.AppendUint64(nil, uint64(seed))
	key = append(key, study[:]...)
	return &studyPseudonyms{mac: hmac.New(sha256.New, key)}
}

// of is id's pseudonym; nil for a nil id.
func (p *studyPseudonyms) of(id *uuid.UUID) *string {
	if id == nil {
		return nil
	}
	p.mac.Reset()
	p.mac.Write(id[:])
	s := hex.EncodeToString(p.mac.Sum(nil))
	return &s
}

// studyExportRowOf builds a row from a page's row.
func studyExportRowOf(st models.Study, ps *studyPseudonyms, r models.StudyExportPageRow) *studyExportRow {
	out := &studyExportRow{Schema: studyExportSchema, StudyID: st.StudyID, ArmName: r.ArmName, ArmID: r.ArmID,
		ConfigID: r.ConfigID, Participant: ps.of(r.UserID), Session: ps.of(r.SessionID), MetaQueryID: r.MetaQueryID,
		RequestedAt: r.RequestedAt.UTC(), ModelID: r.ModelID, ModelName: r.ModelName, Confidence: r.Confidence,
		TotalServingMS: r.TotalServingMs, GenerationTimeMS: r.GenerationTimeMs, TokensGenerated: r.TokensGenerated,
		LanguageID: r.LanguageID, Trigger: r.Trigger}
	// The unit randomised, as assignment has it: a session unit without a
	// session is its user.
	switch {
	case st.Unit == unitUser:
		out.UnitKey = out.Participant
	case st.Unit == unitSession && r.SessionID != nil:
		out.UnitKey = out.Session
	case st.Unit == unitSession:
		out.UnitKey = out.Participant
	default:
		out.UnitKey = ps.of(&r.MetaQueryID)
	}
	if r.ModelID == nil {
		return out
	}
	// shown and accepted as the analytics define them; accepted_at is when
	// the acceptance was recorded, else the last time it was shown.
	shown := len(r.ShownAt) > 0
	accepted := shown && r.WasAccepted != nil && *r.WasAccepted
	out.Shown, out.Accepted = &shown, &accepted
	if len(r.Truths) == 0 || r.Completion == nil {
		return out
	}
	latest := r.Truths[len(r.Truths)-1]
	em, es := eval.ExactMatch(*r.Completion, latest), eval.EditSimilarity(*r.Completion, latest)
	out.ExactMatch, out.EditSimilarity = &em, &es
	if !accepted {
		return out
	}
	acceptedAt := r.ShownAt[len(r.ShownAt)-1]
	if r.FeedbackAt != nil {
		acceptedAt = *r.FeedbackAt
	}
	surv := []**float64{&out.Survival30s, &out.Survival2m, &out.Survival5m, &out.Survival10m}
	for k, h := range survivalHorizons {
		if v, ok := survivalBy(*r.Completion, acceptedAt, h, r.Truths, r.TruthTimes); ok {
			*surv[k] = &v
		}
	}
	return out
}

// studyExportWriter writes rows in one format.
type studyExportWriter interface {
	header() error
	row(*studyExportRow) error
	flush() error
}

type jsonlWriter struct {
	w   *bufio.Writer
	enc *json.Encoder
}

func (j *jsonlWriter) header() error               { return nil }
func (j *jsonlWriter) row(r *studyExportRow) error { return j.enc.Encode(r) }
func (j *jsonlWriter) flush() error                { return j.w.Flush() }

type csvWriter struct {
	w   *csv.Writer
	rec []string
}

func (c *csvWriter) header() error { return c.w.Write(studyExportColumns) }

func (c *csvWriter) row(r *studyExportRow) error {
	c.rec = c.rec[:0]
	for _, v := range r.values() {
		c.rec = append(c.rec, csvValue(v))
	}
	return c.w.Write(c.rec)
}

func (c *csvWriter) flush() error {
	c.w.Flush()
	return c.w.Error()
}

// studyExport answers GET /api/analytics/studies/{study_id}/export. The
// rows are read a page at a time in one read-only, repeatable-read
// transaction (a consistent snapshot) and each is written as soon as it
// is read, so the export's size does not bound memory. The status is
// sent before the rows are read: an export that fails half way closes
// the connection before the body's end, so the client sees a transfer
// error instead of a shorter file; the cause is logged.
func (s *Server) studyExport(c *fiber.Ctx) error {
	q := queryFields(c)
	format := "jsonl"
	if f, ok := q.str("format", false, 0, 0); ok {
		if f != "jsonl" && f != "csv" {
			q.add("literal_error", "format", "Input should be 'jsonl' or 'csv'", f, map[string]any{"expected": "'jsonl' or 'csv'"})
		}
		format = f
	}
	if err := q.err(); err != nil {
		return err
	}
	st, err := s.pathStudy(c)
	if err != nil {
		return err
	}
	ctype := "application/x-ndjson; charset=utf-8"
	if format == "csv" {
		ctype = "text/csv; charset=utf-8"
	}
	c.Set(fiber.HeaderContentType, ctype)
	c.Set(fiber.HeaderContentDisposition, fmt.Sprintf(`attachment; filename="code4me-study-%s.%s.%s"`, st.StudyID, studyExportSchema, format))
	c.Set(fiber.HeaderCacheControl, "no-store")
	c.Set("X-Code4me-Export-Schema", studyExportSchema)
	// Fiber returns from the handler before the body is written, and the
	// request's context is not cancelled when the client leaves: the
	// export has its own deadline and stops at the first failed write.
	base := context.WithoutCancel(c.UserContext())
	fctx := c.Context()
	c.Context().SetBodyStreamWriter(func(w *bufio.Writer) {
		ctx, cancel := context.WithTimeout(base, studyExportTimeout)
		defer cancel()
		var out studyExportWriter
		if format == "csv" {
			out = &csvWriter{w: csv.NewWriter(w)}
		} else {
			enc := json.NewEncoder(w)
			enc.SetEscapeHTML(false)
			out = &jsonlWriter{w: w, enc: enc}
		}
		if err := s.writeStudyExport(ctx, out, st); err != nil {
			s.log.Warn("study export failed", slog.String("study_id", st.StudyID.String()), slog.String("error", err.Error()))
			if conn := fctx.Conn(); conn != nil {
				conn.Close()
			}
		}
	})
	return nil
}

// writeStudyExport writes the study's rows to out in a snapshot of the
// database.
func (s *Server) writeStudyExport(ctx context.Context, out studyExportWriter, st models.Study) error {
	tx, err := s.db.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly})
	if err != nil {
		return fmt.Errorf("begin: %w", err)
	}
	defer tx.Rollback(context.WithoutCancel(ctx))
	if err := out.header(); err != nil {
		return err
	}
	ps := newStudyPseudonyms(st.Seed, st.StudyID)
	from, to := studyWindow(st)
	arg := models.StudyExportPageParams{StudyID: st.StudyID, FromTime: from, ToTime: to, AfterTime: from, AfterID: uuid.Nil,
		PageSize: studyExportPage}
	for {
		rows, err := s.q.StudyExportPage(ctx, tx, arg)
		if err != nil {
			return fmt.Errorf("page after %s: %w", arg.AfterID, err)
		}
		for _, r := range rows {
			if err := out.row(studyExportRowOf(st, ps, r)); err != nil {
				return err
			}
		}
		if err := out.flush(); err != nil {
			return err
		}
		// A page holds whole queries: it is short only when it is the last.
		queries := 0
		for i, r := range rows {
			if i == 0 || r.MetaQueryID != rows[i-1].MetaQueryID {
				queries++
			}
		}
		if queries < int(studyExportPage) {
			return nil
		}
		last := rows[len(rows)-1]
		arg.AfterTime, arg.AfterID = last.RequestedAt, last.MetaQueryID
	}
}
