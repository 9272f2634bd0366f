package db_test

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/code4me/code4me/internal/db"
	"github.com/code4me/code4me/models"
)

// Feedback for a generation: the query's owner is checked, acceptance is
// recorded and the ground truth stored, all in one transaction; a missing
// row surfaces as db.ErrNotFound.
func ExampleWithTx() {
	ctx := context.Background()
	pool, err := db.Open(ctx, "postgres://localhost/code4me", db.Options{MaxConns: 20, StatementTimeout: 5 * time.Second}, slog.Default())
	if err != nil {
		return
	}
	defer pool.Close()
	q := models.New()
	queryID, modelID, userID := uuid.New(), int64(1), uuid.New()

	err = db.WithTx(ctx, pool, func(tx pgx.Tx) error {
		mq, err := q.MetaQueryGetByID(ctx, tx, queryID)
		if err != nil {
			return db.Translate(err)
		}
		if mq.UserID == nil || *mq.UserID != userID {
			return errors.New("forbidden")
		}
		n, err := q.GenerationUpdateFeedback(ctx, tx, models.GenerationUpdateFeedbackParams{
			MetaQueryID: queryID, ModelID: modelID, WasAccepted: true})
		if err != nil {
			return err
		}
		if n == 0 {
			return db.ErrNotFound
		}
		_, err = q.GroundTruthCreate(ctx, tx, models.GroundTruthCreateParams{
			MetaQueryID: queryID, ModelID: &modelID, GroundTruth: "return x"})
		return err
	})
	_ = err
}
