package server

import (
	"context"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
)

// Persistence of a completion query overlapped with inference.
//
// A completion query is written in two commits. The rows that do not
// depend on the models' output (meta_query without its total serving time,
// completion_query, context, context files, telemetry) go in one batch,
// one implicit transaction, sent while the models run: its statements and
// the WAL flush of its (large: the redacted context) rows cost the request
// nothing. When the models have answered, the generations and the total
// serving time go in a second batch, also one implicit transaction; its
// WAL is a few hundred bytes, so its flush is short. The response is sent
// only after that second commit, so every acknowledged meta_query_id is
// committed with its generations: feedback can never race to a 404.
//
// Between the two commits the query exists without generations and with
// total_serving_ms NULL. When the request then ends without an answer
// (cancelled, every model overloaded, the second batch failed), the first
// commit's rows are deleted again (ON DELETE CASCADE), in the background;
// if the process dies in between, the row stays with total_serving_ms
// NULL, which marks a query that was received and never answered
// (docs/data-model.md).
//
// A first batch that fails (a conflict, Postgres briefly unreachable)
// commits nothing, and the whole query is written after inference in one
// batch, exactly as without the overlap.

// discardTimeout bounds the background deletion of an unanswered query.
const discardTimeout = 10 * time.Second

// storeCounts counts completion queries by the way they were stored
// (tests, metrics).
type storeCounts struct {
	overlapped atomic.Int64 // first commit during inference, second after
	single     atomic.Int64 // everything after inference (the first batch failed)
	discarded  atomic.Int64 // first commit deleted again: the request had no answer
}

// preStore is the first commit of a query, running while the models do.
type preStore struct {
	mq   uuid.UUID
	done chan struct{}
	err  error // valid once done is closed
}

// startPreStore sends the first batch (what queue adds) in a background
// goroutine (Drain waits for it). ctx's cancellation does not stop it: a
// cancelled request deletes what it committed with discard.
func (s *Server) startPreStore(ctx context.Context, mq uuid.UUID, queue func(ctx context.Context, b *batchTx) error) *preStore {
	ps := &preStore{mq: mq, done: make(chan struct{})}
	ctx = context.WithoutCancel(ctx)
	s.bg.Go(func() {
		defer close(ps.done)
		var b batchTx
		if err := queue(ctx, &b); err != nil {
			ps.err = err
			return
		}
		if s.plugin.preStoreHook != nil {
			s.plugin.preStoreHook(&b)
		}
		ctx, cancel := context.WithTimeout(ctx, completionTimeout)
		defer cancel()
		if err := b.send(ctx, s.db); err != nil {
			ps.err = fmt.Errorf("first commit: %w", err)
		}
	})
	return ps
}

// wait returns when the first batch has ended: nil when it is committed.
func (ps *preStore) wait() error {
	<-ps.done
	return ps.err
}

// discard deletes the first commit's rows once it has ended, without
// making the caller wait (a background goroutine, which Drain waits for).
// Safe when the first batch failed (nothing to delete).
func (s *Server) discard(ps *preStore) {
	s.plugin.stored.discarded.Add(1)
	s.bg.Go(func() {
		if ps.wait() != nil {
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), discardTimeout)
		defer cancel()
		if _, err := s.q.MetaQueryDelete(ctx, s.db, ps.mq); err != nil {
			s.log.Warn("completion: cannot delete the rows of an unanswered query",
				slog.String("meta_query_id", ps.mq.String()), slog.String("error", err.Error()))
		}
	})
}

// queryOrigin is what a generation row records of how its completion query
// was made: nil fields are stored as NULL.
type queryOrigin struct {
	contextPolicy *string // generation.context_policy
	trigger       *string // generation.trigger
	dropSuffix    bool    // the prompt left the suffix out (a study arm's policy)
	kind          string  // the query's kind stored as the sampler's mode ("": the stop mode)
}

// Context policies (generation.context_policy), as pick applies them.
const (
	policyNone          = "none"
	policyAllButCurrent = "files:all-but-current"
	policyNamed         = "files:named"
)

// triggers maps the trigger types seeded in the lookup tables onto
// generation.trigger: "manual" (1) is explicit, "auto" (2) and "idle" (3),
// where the editor asked while the user typed or paused, are typed. A
// trigger type added later has no mapping: NULL.
var triggers = map[int64]string{1: "explicit", 2: "typed", 3: "typed"}

// queryOriginOf derives r's context policy from the files it asked for, and
// its trigger from its contextual telemetry's trigger type (triggers). The
// trigger is part of the contextual telemetry, so it is recorded only when
// that telemetry is stored.
func queryOriginOf(r *completionRequest, pr *prepared) queryOrigin {
	policy := policyNamed
	switch want := r.Context.ContextFiles; {
	case len(r.Extra) > 0:
		// Files the client sent itself: named by it.
	case len(want) == 0:
		policy = policyNone
	case len(want) == 1 && want[0] == "*":
		policy = policyAllButCurrent
	}
	qo := queryOrigin{contextPolicy: &policy, dropSuffix: !pr.asg.keepsSuffix(), kind: r.Kind}
	if r.Trigger != "" {
		qo.trigger = &r.Trigger
	} else if t := r.Contextual; t != nil && r.StoreContextualTelemetry && pr.state.StoreContextualTelemetry {
		if trigger, ok := triggers[t.TriggerTypeID]; ok {
			qo.trigger = &trigger
		}
	}
	return qo
}
