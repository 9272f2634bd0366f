// Package db opens the Postgres pool and applies the embedded migrations
// (ours and River's).
package db

import (
	"context"
	"errors"
	"log/slog"
)

// Migrate brings the database at databaseURL to the newest schema: the
// project's migrations and River's. It is idempotent.
//
// Placeholder until the schema work lands.
func Migrate(ctx context.Context, databaseURL string, log *slog.Logger) error {
	return errors.New("db: migrations not written yet")
}
