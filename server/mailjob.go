package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/riverqueue/river"
	"github.com/riverqueue/river/riverdriver/riverpgxv5"

	"github.com/code4me/code4me/internal/db"
)

// Emails are River jobs: River carries work that must survive a restart. A
// sign-up inserts its verification mail in the same transaction as the
// user, so a user never exists without it; a mail that SMTP refuses is
// retried with backoff, by whichever server process is running, even
// after a restart. The job holds only which mail for which user: the
// token and its link are made when the job runs, so no credential is ever
// written to the job table (or its logs), and a retried job sends a fresh
// link.

const (
	mailKindVerify = "verify"
	mailKindReset  = "reset"
	// mailKindEmailChanged is the notice to an account's previous address
	// (mailArgs.OldEmail) that its email was changed.
	mailKindEmailChanged = "email_changed"
	// mailAttempts bounds the tries of one mail (River's backoff grows
	// with the attempt: the last ones are hours apart).
	mailAttempts = 10
)

// mailArgs is a mail job.
type mailArgs struct {
	Mail   string    `json:"mail"` // mailKindVerify, mailKindReset or mailKindEmailChanged
	UserID uuid.UUID `json:"user_id"`
	// OldEmail is the address a mailKindEmailChanged notice goes to.
	OldEmail string `json:"old_email,omitempty"`
}

// Kind is the River job kind.
func (mailArgs) Kind() string { return "mail" }

type mailWorker struct {
	river.WorkerDefaults[mailArgs]
	s *Server
}

// Work sends the mail. A user who is gone gets nothing.
func (w *mailWorker) Work(ctx context.Context, job *river.Job[mailArgs]) error {
	s := w.s
	u, err := s.q.UserGetByID(ctx, s.db, job.Args.UserID)
	if errors.Is(db.Translate(err), db.ErrNotFound) {
		return nil
	} else if err != nil {
		return err
	}
	switch job.Args.Mail {
	case mailKindVerify:
		return s.mailVerification(ctx, u)
	case mailKindReset:
		return s.mailReset(ctx, u)
	case mailKindEmailChanged:
		return s.mailEmailChanged(ctx, u, job.Args.OldEmail)
	}
	return river.JobCancel(fmt.Errorf("unknown mail %q", job.Args.Mail))
}

// jobs is the server's River client.
type jobs struct {
	client *river.Client[pgx.Tx]
	queue  string
	// evalQueue holds eval jobs (eval_job.go), one at a time.
	evalQueue string
}

// startJobs creates the River client with the mail worker on queue and
// the eval worker on queue's eval queue, and starts it; it runs until
// stopJobs.
func (s *Server) startJobs(ctx context.Context, queue string) error {
	if queue == "" {
		queue = river.QueueDefault
	}
	evalQueue := "eval"
	if queue != river.QueueDefault {
		evalQueue = queue + "_eval"
	}
	workers := river.NewWorkers()
	if err := s.addRetention(workers); err != nil { // retention.go
		return err
	}
	if err := river.AddWorkerSafely(workers, &mailWorker{s: s}); err != nil {
		return err
	}
	if err := river.AddWorkerSafely(workers, &evalWorker{s: s}); err != nil {
		return err
	}
	if err := river.AddWorkerSafely(workers, &contextEmbedWorker{s: s}); err != nil { // retrieval.go
		return err
	}
	if err := s.addExportWorkers(workers); err != nil {
		return err
	}
	if err := s.addTruthMatch(workers); err != nil { // truth_job.go
		return err
	}
	c, err := river.NewClient(riverpgxv5.New(s.db), &river.Config{
		Queues:  map[string]river.QueueConfig{queue: {MaxWorkers: 2}, evalQueue: {MaxWorkers: 1}},
		Workers: workers,
		Logger:  s.log.With(slog.String("component", "river")),

		PeriodicJobs: exportPeriodicJobs(queue), // deletes expired exports (export_job.go)
	})
	if err != nil {
		return fmt.Errorf("server: job queue: %w", err)
	}
	c.PeriodicJobs().Add(s.retentionJob(queue))
	c.PeriodicJobs().Add(s.truthSweepJob(queue))
	if err := c.Start(ctx); err != nil {
		return fmt.Errorf("server: start job queue: %w", err)
	}
	s.jobs = jobs{client: c, queue: queue, evalQueue: evalQueue}
	return nil
}

// stopJobs lets running jobs finish, up to ctx's deadline.
func (s *Server) stopJobs(ctx context.Context) error {
	if s.jobs.client == nil {
		return nil
	}
	return s.jobs.client.Stop(ctx)
}

func (s *Server) mailOpts() *river.InsertOpts {
	return &river.InsertOpts{Queue: s.jobs.queue, MaxAttempts: mailAttempts}
}

// queueMailTx inserts a mail job in tx.
func (s *Server) queueMailTx(ctx context.Context, tx pgx.Tx, kind string, user uuid.UUID) error {
	return s.queueMailArgsTx(ctx, tx, mailArgs{Mail: kind, UserID: user})
}

// queueMailArgsTx inserts the mail job args in tx.
func (s *Server) queueMailArgsTx(ctx context.Context, tx pgx.Tx, args mailArgs) error {
	_, err := s.jobs.client.InsertTx(ctx, tx, args, s.mailOpts())
	return err
}

// queueMail inserts a mail job, in the background: the request's answer
// and its timing do not depend on it (a reset request answers the same
// whether or not the address exists).
func (s *Server) queueMail(kind string, user uuid.UUID) {
	s.background(func(ctx context.Context) {
		ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		if _, err := s.jobs.client.Insert(ctx, mailArgs{Mail: kind, UserID: user}, s.mailOpts()); err != nil {
			s.log.Warn("mail: queue "+kind+" mail", slog.String("error", err.Error()))
		}
	})
}
