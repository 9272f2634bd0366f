package db

import (
	"context"
	"fmt"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/code4me/code4me/models"
)

// DeleteUser deletes the user's account in one transaction and returns
// ErrNotFound when there is no such user.
//
// Without deleteData the research data stays, pseudonymised: sessions,
// queries, chats, study assignments and study participation keep their
// rows with user_id NULL,
// while memberships and API keys go. With deleteData every query the user
// made (with its context, telemetry, generations, ground truth and chat
// messages), their chats, sessions, assignments and study participation,
// and the projects where
// they were the only member are deleted too, and so is the multi-file
// context of the user's other projects where no remaining member consents
// to storing context (users.store_context); those projects are returned,
// for the caller to drop cached copies of their context. Revoking the
// user's tokens in Redis is the caller's job.
func DeleteUser(ctx context.Context, b Beginner, userID uuid.UUID, deleteData bool) (cleared []uuid.UUID, err error) {
	q := models.New()
	err = WithTx(ctx, b, func(tx pgx.Tx) error {
		cleared = nil
		if _, err := q.UserGetByID(ctx, tx, userID); err != nil {
			return fmt.Errorf("look up user: %w", Translate(err))
		}
		if deleteData {
			steps := []struct {
				what string
				run  func(context.Context, models.DBTX, uuid.UUID) (int64, error)
			}{
				{"queries", q.UserDataDeleteMetaQueries},
				{"sole projects", q.UserDataDeleteSoleProjects},
				{"shared project context", func(ctx context.Context, db models.DBTX, id uuid.UUID) (int64, error) {
					ids, err := q.UserDataClearSharedContext(ctx, db, id)
					cleared = ids
					return int64(len(ids)), err
				}},
				{"chats", q.UserDataDeleteChats},
				{"sessions", q.UserDataDeleteSessions},
				{"assignments", q.UserDataDeleteAssignments},
				{"study participation", q.UserDataDeleteParticipation},
			}
			for _, s := range steps {
				if _, err := s.run(ctx, tx, userID); err != nil {
					return fmt.Errorf("delete user %s: %w", s.what, err)
				}
			}
		}
		if _, err := q.UserDelete(ctx, tx, userID); err != nil {
			return fmt.Errorf("delete user: %w", err)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return cleared, nil
}
