package devsvc

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
)

// portOrFree returns port, or a free port when port is 0.
func portOrFree(port int) (int, error) {
	if port != 0 {
		return port, nil
	}
	return freePort()
}

// Restart starts a server that Stop stopped again, from the same
// directory, with the same data and password, on the port it had, so that
// clients configured with its URL reconnect to it. It is for tests that
// take a server away from a client and give it back. It fails when the
// server still runs, or when another process took the port meanwhile.
func (p *Postgres) Restart(ctx context.Context) error {
	if err := p.restart(ctx); err != nil {
		return fmt.Errorf("postgres: %w", err)
	}
	return nil
}

func (p *Postgres) restart(ctx context.Context) error {
	if pid := p.PID(); pid != 0 {
		return fmt.Errorf("the server (pid %d) is running", pid)
	}
	ctx, cancel := withStartTimeout(ctx)
	defer cancel()
	acct, err := serverAccount("postgres")
	if err != nil {
		return err
	}
	pgVersion, err := os.ReadFile(filepath.Join(p.dataDir, "PG_VERSION"))
	if err != nil {
		return fmt.Errorf("no cluster in %s: %w", p.dataDir, unwrapPathErr(err))
	}
	bin, err := binForData(string(pgVersion))
	if err != nil {
		return err
	}
	return p.launch(ctx, bin, acct, p.Port())
}

// Restart starts a server that Stop stopped again, from the same
// directory, with the same data and password, on the port it had: see
// (*Postgres).Restart.
func (r *Redis) Restart(ctx context.Context) error {
	if err := r.restart(ctx); err != nil {
		return fmt.Errorf("redis: %w", err)
	}
	return nil
}

func (r *Redis) restart(ctx context.Context) error {
	if pid := r.PID(); pid != 0 {
		return fmt.Errorf("the server (pid %d) is running", pid)
	}
	ctx, cancel := withStartTimeout(ctx)
	defer cancel()
	bin, err := FindRedisServer()
	if err != nil {
		return err
	}
	return r.launch(ctx, bin, r.Port())
}

// withStartTimeout gives ctx the default start limit when it has no
// deadline.
func withStartTimeout(ctx context.Context) (context.Context, context.CancelFunc) {
	if _, ok := ctx.Deadline(); ok {
		return ctx, func() {}
	}
	return context.WithTimeout(ctx, defaultStartTimeout)
}
