package server

import (
	"context"
	"errors"

	"github.com/gofiber/fiber/v2"
	"github.com/jackc/pgx/v5"

	"github.com/code4me/code4me/internal/auth"
	"github.com/code4me/code4me/internal/db"
	"github.com/code4me/code4me/models"
)

func (s *Server) projectRoutes(api fiber.Router) {
	g := api.Group("/project")
	g.Post("/create", s.guard(ClassA), s.projectCreate)
	g.Put("/activate", s.guard(ClassA), s.projectActivate)
}

// loginSession is the caller's current session (the login's, or the API
// key's), or 401 InvalidOrExpiredSessionToken.
func (s *Server) loginSession(ctx context.Context, p *Principal, errMsg string) (auth.Session, error) {
	sess, err := s.tokens.CurrentSession(ctx, p.parent())
	if errors.Is(err, auth.ErrNotFound) {
		return auth.Session{}, fail(fiber.StatusUnauthorized, MsgInvalidOrExpiredSession)
	}
	if err != nil {
		return auth.Session{}, internal(errMsg, err)
	}
	return sess, nil
}

// POST /api/project/create: creates the project with the caller as owner,
// activates it in the caller's session and answers a random project token
// (never the project id itself) and, for clients that activate it later,
// the project id.
func (s *Server) projectCreate(c *fiber.Ctx) error {
	ctx := c.UserContext()
	f, err := jsonBody(c)
	if err != nil {
		return err
	}
	name, _ := f.str("project_name", true, 1, 100)
	if err := f.err(); err != nil {
		return err
	}
	p := principal(c)
	if _, err := s.loadUser(ctx, p.UserID, MsgCreateProjectError); err != nil {
		return err
	}
	sess, err := s.loginSession(ctx, p, MsgCreateProjectError)
	if err != nil {
		return err
	}
	var proj models.Project
	err = db.WithTx(ctx, s.db, func(tx pgx.Tx) error {
		var err error
		if proj, err = s.q.ProjectCreate(ctx, tx, models.ProjectCreateParams{ProjectName: name, CreatedBy: p.UserID}); err != nil {
			return err
		}
		if err := s.q.ProjectMemberAdd(ctx, tx, models.ProjectMemberAddParams{ProjectID: proj.ProjectID, UserID: p.UserID, Role: "owner"}); err != nil {
			return err
		}
		return s.q.SessionProjectAdd(ctx, tx, models.SessionProjectAddParams{SessionID: sess.ID, ProjectID: proj.ProjectID})
	})
	if err != nil {
		return internal(MsgCreateProjectError, err)
	}
	pt, err := s.tokens.IssueProject(ctx, sess, proj.ProjectID)
	if err != nil {
		return internal(MsgCreateProjectError, err)
	}
	s.setCookie(c, cookieProject, pt.Token, timeZero)
	return c.Status(fiber.StatusCreated).JSON(fiber.Map{"message": MsgCreateProject, "project_token": pt.Token, "project_id": proj.ProjectID})
}

// PUT /api/project/activate: only members may activate a
// project. A project that does not exist and one the caller is not a
// member of get the same answer, so ids cannot be probed.
func (s *Server) projectActivate(c *fiber.Ctx) error {
	ctx := c.UserContext()
	f, err := jsonBody(c)
	if err != nil {
		return err
	}
	pid, _ := f.uuidField("project_id", true)
	if err := f.err(); err != nil {
		return err
	}
	p := principal(c)
	if _, err := s.loadUser(ctx, p.UserID, MsgActivateProjectError); err != nil {
		return err
	}
	sess, err := s.loginSession(ctx, p, MsgActivateProjectError)
	if err != nil {
		return err
	}
	member, err := s.q.ProjectMemberCheck(ctx, s.db, models.ProjectMemberCheckParams{ProjectID: pid, UserID: p.UserID})
	if err != nil {
		return internal(MsgActivateProjectError, err)
	}
	if !member {
		return fail(fiber.StatusUnauthorized, MsgInvalidOrExpiredProject)
	}
	if err := s.q.SessionProjectAdd(ctx, s.db, models.SessionProjectAddParams{SessionID: sess.ID, ProjectID: pid}); err != nil {
		if db.IsForeignKeyViolation(err, "") {
			return fail(fiber.StatusNotFound, MsgProjectNotFound)
		}
		return internal(MsgActivateProjectError, err)
	}
	pt, err := s.tokens.IssueProject(ctx, sess, pid)
	if err != nil {
		return internal(MsgActivateProjectError, err)
	}
	s.setCookie(c, cookieProject, pt.Token, timeZero)
	return c.JSON(fiber.Map{"message": MsgActivateProject, "project_token": pt.Token})
}
