package server

import (
	"context"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/code4me/code4me/internal/mail"
)

// flakySender fails its first n sends.
type flakySender struct {
	mail.Sender
	fail  int64
	calls atomic.Int64
}

func (f *flakySender) Send(ctx context.Context, m mail.Message) error {
	if f.calls.Add(1) <= f.fail {
		return errors.New("smtp: 421 service not available")
	}
	return f.Sender.Send(ctx, m)
}

// TestMailJobRetriedWithoutSecrets: the verification mail is a River job
// committed with the user; a refused send is retried and the mail arrives;
// the job holds the user id, never the token or the link.
func TestMailJobRetriedWithoutSecrets(t *testing.T) {
	var flaky *flakySender
	e := newEnvMail(t, nil, func(s mail.Sender) mail.Sender {
		flaky = &flakySender{Sender: s, fail: 1}
		return flaky
	})
	e.signup("retry@example.com")
	tok := e.mailToken(1, "retry@example.com") // after River's first backoff (about 1 s)
	if n := flaky.calls.Load(); n != 2 {
		t.Fatalf("%d sends, want a failed one and a retry", n)
	}
	var args, state string
	var attempts int
	deadline := time.Now().Add(10 * time.Second)
	for {
		if err := e.srv.db.QueryRow(context.Background(),
			`SELECT args::text, attempt, state::text FROM river_job WHERE queue = $1 AND kind = 'mail'`, e.srv.jobs.queue).
			Scan(&args, &attempts, &state); err != nil {
			t.Fatal(err)
		}
		if state == "completed" || time.Now().After(deadline) {
			break
		}
		time.Sleep(20 * time.Millisecond) // River records completions in batches
	}
	if strings.Contains(args, tok) || strings.Contains(args, "token") || !strings.Contains(args, `"mail": "verify"`) && !strings.Contains(args, `"mail":"verify"`) {
		t.Fatalf("job args %s", args)
	}
	if attempts != 2 || state != "completed" {
		t.Fatalf("attempt %d, state %s", attempts, state)
	}
	// The link works.
	e.client().expect("GET", "/api/user/verify/?token="+tok, nil, 200)
}
