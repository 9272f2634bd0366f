package server

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/code4me/code4me/internal/db"
	"github.com/code4me/code4me/models"
)

// Studies are A/B experiments run on the server. At most one study runs at
// a time. While it runs (status 'running' and now in [starts_at, ends_at)),
// each completion request of a user is answered by one of its arms:
//
//   - Enrolment: a user joins at their first completion request (or
//     sign-in, for studies randomising users) while the study has fewer
//     participants than max_participants; a user turned away by the cap
//     keeps their own config. Enrolment is in Postgres (study_participant),
//     under a lock on the study row, so the cap holds across server nodes.
//   - Assignment: the arm is a seeded hash of the study's seed, its id and
//     the unit (the user, the session or the request, per study), mapped
//     onto the arms in proportion to their weights. It needs no lookup, so
//     every node gives a unit the same arm. A user or session unit's arm is
//     logged once, at its first exposure (config_assignment_history); a
//     request unit's assignment is its query's row.
//   - Exposure: every completion query stores its study and arm
//     (meta_query.study_id, arm_id) and the arm's config (config_id).
//   - Policy: the arm's policy changes what the server does (armPolicy),
//     so a study needs no plugin update. For studies randomising users,
//     the plugin also receives the arm's config document at sign-in.
//
// The running study is cached here and read again from Postgres every
// studyRefresh, and at once after an admin changes a study on this node;
// another node sees the change within studyRefresh.

// studyRefresh is how long the cached running study is used before it is
// read again.
const studyRefresh = 5 * time.Second

// Units of randomisation (study.unit).
const (
	unitUser    = "user"
	unitSession = "session"
	unitRequest = "request"
)

// armPolicy is what an arm changes in the server's handling of a
// completion request (study_arm.policy); a zero field changes nothing.
type armPolicy struct {
	// ModelIDs replaces the models the request names.
	ModelIDs []int64 `json:"model_ids,omitempty"`
	// MaxTokens caps the tokens generated (never above the server's limit).
	MaxTokens int `json:"max_tokens,omitempty"`
	// TimeBudgetMS replaces each model's deadline.
	TimeBudgetMS int `json:"time_budget_ms,omitempty"`
	// Context chooses the multi-file context: "request" (what the request
	// asks for), "none", or "all-but-current" (every project file but the
	// current one).
	Context string `json:"context,omitempty"`
	// Suffix false leaves the text after the cursor out of the prompt.
	Suffix *bool `json:"suffix,omitempty"`
	// MinPrefixChars: a request whose prefix is shorter is answered with no
	// completion (stored, with no generation).
	MinPrefixChars int `json:"min_prefix_chars,omitempty"`
	// DebounceMS: the models start this long after the request arrives,
	// and only if no newer request for the same session and file arrived
	// meanwhile (the older one is answered as superseded).
	DebounceMS int `json:"debounce_ms,omitempty"`
}

// Context choices of armPolicy.Context.
const (
	armContextRequest = "request"
	armContextNone    = "none"
	armContextAll     = "all-but-current"
)

// studyArm is an arm with its parsed policy.
type studyArm struct {
	models.StudyArm
	policy armPolicy
}

// runningStudy is the running study and its arms, ordered by arm_id.
type runningStudy struct {
	models.Study
	arms        []studyArm
	totalWeight uint64
}

// inWindow reports whether t is inside the study's dates.
func (st *runningStudy) inWindow(t time.Time) bool {
	return !t.Before(st.StartsAt) && (st.EndsAt == nil || t.Before(*st.EndsAt))
}

// pickArm maps a unit onto an arm: the first 8 bytes of
// sha256(seed as 8 big-endian bytes || study id || unit id), as a
// big-endian integer, modulo the total weight, then the arms in arm_id
// order, each covering as many values as its weight.
func pickArm(seed int64, study uuid.UUID, arms []studyArm, total uint64, unit uuid.UUID) *studyArm {
	var b [40]byte
	binary.BigEndian.PutUint64(b[:8], uint64(seed))
	copy(b[8:24], study[:])
	copy(b[24:], unit[:])
	h := sha256.Sum256(b[:])
	v := binary.BigEndian.Uint64(h[:8]) % total
	for i := range arms {
		w := uint64(arms[i].Weight)
		if v < w {
			return &arms[i]
		}
		v -= w
	}
	return &arms[len(arms)-1] // not reached: the weights sum to total
}

// assignment is the study arm answering one request; nil: none.
type assignment struct {
	studyID uuid.UUID
	arm     *studyArm
}

// studyIDPtr and armIDPtr are the meta_query columns of a (possibly nil)
// assignment.
func (a *assignment) studyIDPtr() *uuid.UUID {
	if a == nil {
		return nil
	}
	return &a.studyID
}

func (a *assignment) armIDPtr() *int64 {
	if a == nil {
		return nil
	}
	return &a.arm.ArmID
}

// studies is the server's study state.
type studies struct {
	mu       sync.Mutex
	loadedAt time.Time
	cur      *runningStudy // nil: no study runs
	// enrolled caches, for cur, whether a user is a participant (false:
	// turned away by the cap; forgotten when the study changes).
	enrolled map[uuid.UUID]bool
	// logged holds the units of cur whose assignment is logged.
	logged map[[2]uuid.UUID]bool
}

// invalidate makes the next request read the running study again.
func (ss *studies) invalidate() {
	ss.mu.Lock()
	ss.loadedAt = time.Time{}
	ss.mu.Unlock()
}

// running returns the running study, read again when the cache is older
// than studyRefresh; nil when none runs.
func (s *Server) runningStudy(ctx context.Context) (*runningStudy, error) {
	ss := &s.studies
	ss.mu.Lock()
	defer ss.mu.Unlock()
	if !ss.loadedAt.IsZero() && time.Since(ss.loadedAt) < studyRefresh {
		return ss.cur, nil
	}
	st, err := s.loadRunningStudy(ctx)
	if err != nil {
		return nil, err
	}
	switch {
	case st == nil || ss.cur == nil || st.StudyID != ss.cur.StudyID:
		ss.enrolled, ss.logged = map[uuid.UUID]bool{}, map[[2]uuid.UUID]bool{}
	case !st.UpdatedAt.Equal(ss.cur.UpdatedAt):
		// The cap may have been raised: ask again for those turned away.
		for u, in := range ss.enrolled {
			if !in {
				delete(ss.enrolled, u)
			}
		}
	}
	ss.cur, ss.loadedAt = st, time.Now()
	return st, nil
}

// loadRunningStudy reads the running study and its arms; nil when none.
func (s *Server) loadRunningStudy(ctx context.Context) (*runningStudy, error) {
	row, err := s.q.StudyRunning(ctx, s.db)
	if errors.Is(db.Translate(err), db.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read the running study: %w", err)
	}
	arms, err := s.q.StudyArmList(ctx, s.db, row.StudyID)
	if err != nil {
		return nil, fmt.Errorf("read the running study's arms: %w", err)
	}
	st := &runningStudy{Study: row}
	for _, a := range arms {
		sa := studyArm{StudyArm: a}
		if err := json.Unmarshal(a.Policy, &sa.policy); err != nil {
			return nil, fmt.Errorf("study arm %d: policy: %w", a.ArmID, err)
		}
		st.arms = append(st.arms, sa)
		st.totalWeight += uint64(a.Weight)
	}
	if len(st.arms) == 0 {
		return nil, nil // a study without arms assigns nobody
	}
	return st, nil
}

// assign returns the arm answering a request of p (request is the
// request's own id), enrolling p's user on their first request; nil when
// no study is in effect or the user was turned away by the cap. forPlugin
// asks, at sign-in, for the arm of a study randomising users only.
func (s *Server) assign(ctx context.Context, userID, sessionID, request uuid.UUID, forPlugin bool) (*assignment, error) {
	st, err := s.runningStudy(ctx)
	if err != nil || st == nil || !st.inWindow(time.Now()) || (forPlugin && st.Unit != unitUser) {
		return nil, err
	}
	in, err := s.enrol(ctx, st, userID)
	if err != nil || !in {
		return nil, err
	}
	unit, logKey := userID, [2]uuid.UUID{userID, uuid.Nil}
	switch {
	case st.Unit == unitRequest:
		unit = request
	case st.Unit == unitSession && sessionID != uuid.Nil:
		// A caller without a session (none yet) is randomised as a user.
		unit, logKey[1] = sessionID, sessionID
	}
	arm := pickArm(st.Seed, st.StudyID, st.arms, st.totalWeight, unit)
	if st.Unit != unitRequest {
		if err := s.logAssignment(ctx, st, arm, logKey); err != nil {
			return nil, err
		}
	}
	return &assignment{studyID: st.StudyID, arm: arm}, nil
}

// enrol reports whether userID takes part in st, enrolling them when the
// cap allows.
func (s *Server) enrol(ctx context.Context, st *runningStudy, userID uuid.UUID) (bool, error) {
	ss := &s.studies
	ss.mu.Lock()
	in, known := ss.enrolled[userID]
	ss.mu.Unlock()
	if known {
		return in, nil
	}
	err := db.WithTx(ctx, s.db, func(tx pgx.Tx) error {
		in = false
		max, err := s.q.StudyLock(ctx, tx, st.StudyID)
		if errors.Is(db.Translate(err), db.ErrNotFound) {
			return nil // no longer running
		} else if err != nil {
			return err
		}
		if in, err = s.q.StudyIsParticipant(ctx, tx, models.StudyIsParticipantParams{StudyID: st.StudyID, UserID: userID}); err != nil || in {
			return err
		}
		if max != nil {
			n, err := s.q.StudyParticipantCount(ctx, tx, st.StudyID)
			if err != nil || n >= int64(*max) {
				return err
			}
		}
		in = true
		return s.q.StudyParticipantAdd(ctx, tx, models.StudyParticipantAddParams{StudyID: st.StudyID, UserID: userID})
	})
	if err != nil {
		return false, fmt.Errorf("study enrolment: %w", err)
	}
	ss.mu.Lock()
	if ss.cur != nil && ss.cur.StudyID == st.StudyID {
		ss.enrolled[userID] = in
	}
	ss.mu.Unlock()
	return in, nil
}

// logAssignment logs a user or session unit's arm once.
func (s *Server) logAssignment(ctx context.Context, st *runningStudy, arm *studyArm, key [2]uuid.UUID) error {
	ss := &s.studies
	ss.mu.Lock()
	done := ss.logged[key]
	ss.mu.Unlock()
	if done {
		return nil
	}
	var session *uuid.UUID
	if key[1] != uuid.Nil {
		session = &key[1]
	}
	if err := s.q.StudyAssignmentLog(ctx, s.db, models.StudyAssignmentLogParams{UserID: key[0], StudyID: &st.StudyID,
		ArmID: &arm.ArmID, AssignedConfigID: arm.ConfigID, SessionID: session}); err != nil {
		return fmt.Errorf("log study assignment: %w", err)
	}
	ss.mu.Lock()
	if ss.cur != nil && ss.cur.StudyID == st.StudyID {
		ss.logged[key] = true
	}
	ss.mu.Unlock()
	return nil
}

// applyPolicy returns the request as the arm answers it: the models, the
// context files and whether the prefix is long enough to answer.
func (a *assignment) applyPolicy(r *completionRequest) *completionRequest {
	if a == nil {
		return r
	}
	pol := a.arm.policy
	out := *r
	if len(pol.ModelIDs) > 0 {
		out.ModelIDs = pol.ModelIDs
	}
	switch pol.Context {
	case armContextNone:
		out.Context.ContextFiles = nil
	case armContextAll:
		out.Context.ContextFiles = []string{"*"}
	}
	if pol.MinPrefixChars > 0 && utf8.RuneCountInString(r.Context.Prefix) < pol.MinPrefixChars {
		out.ModelIDs = nil
	}
	return &out
}

// maxTokens, timeout and suffix are the arm's budgets and prompt applied
// to the server's.
func (a *assignment) maxTokens(limit int) int {
	if a != nil && a.arm.policy.MaxTokens > 0 && a.arm.policy.MaxTokens < limit {
		return a.arm.policy.MaxTokens
	}
	return limit
}

func (a *assignment) timeout(def time.Duration) time.Duration {
	if a != nil && a.arm.policy.TimeBudgetMS > 0 {
		return time.Duration(a.arm.policy.TimeBudgetMS) * time.Millisecond
	}
	return def
}

func (a *assignment) suffix(s string) string {
	if !a.keepsSuffix() {
		return ""
	}
	return s
}

// keepsSuffix reports whether the prompt keeps the text after the cursor.
func (a *assignment) keepsSuffix() bool {
	return a == nil || a.arm.policy.Suffix == nil || *a.arm.policy.Suffix
}

// debounce waits out the arm's debounce from t0 and reports whether the
// request may run: false when ctx ended meanwhile, as it does when a newer
// request of the same session and file arrives (supersede.go).
func debounce(ctx context.Context, a *assignment, t0 time.Time) bool {
	if a == nil || a.arm.policy.DebounceMS <= 0 {
		return true
	}
	t := time.NewTimer(time.Until(t0.Add(time.Duration(a.arm.policy.DebounceMS) * time.Millisecond)))
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
