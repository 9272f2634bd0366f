package server

import (
	"github.com/gofiber/fiber/v2"

	"github.com/code4me/code4me/models"
)

// The caller's own figures, for the dashboard: its completion usage and
// its projects. Both need a login or an API key with the account scope,
// and answer only the caller's rows.

// MsgUsageError is the 500 message of GET /api/user/usage.
const MsgUsageError = "Server failed to compute your usage."

// MsgProjectListError is the 500 message of GET /api/user/projects.
const MsgProjectListError = "Server failed to list your projects."

func (s *Server) usageRoutes(api fiber.Router) {
	api.Get("/user/usage", s.guardAccount(), s.userUsage)
	api.Get("/user/projects", s.guardAccount(), s.userProjects)
}

// userUsage answers GET /api/user/usage?from=&to= (RFC 3339; the window
// [from, to) of the queries' requested_at, default the last 30 days): the
// caller's completion queries, generations shown and accepted, and the
// acceptance rate (accepted / shown) in total, per UTC day with the 50th
// and 95th percentiles of the serving time in milliseconds (null on a day
// no query was answered), and per programming language.
func (s *Server) userUsage(c *fiber.Ctx) error {
	q := queryFields(c)
	f := readAnalyticsFilter(q)
	if f.userID != nil {
		q.add("extra_forbidden", "user_id", "Extra inputs are not permitted", f.userID.String(), nil)
	}
	if err := q.err(); err != nil {
		return err
	}
	ctx := c.UserContext()
	uid := principal(c).UserID
	days, err := s.q.UsageUserDaily(ctx, s.db, models.UsageUserDailyParams{UserID: uid, FromTime: f.from, ToTime: f.to})
	if err != nil {
		return internal(MsgUsageError, err)
	}
	langs, err := s.q.UsageUserLanguages(ctx, s.db, models.UsageUserLanguagesParams{UserID: uid, FromTime: f.from, ToTime: f.to})
	if err != nil {
		return internal(MsgUsageError, err)
	}
	var total struct{ completions, shown, accepted int64 }
	dayList := make([]fiber.Map, 0, len(days))
	for _, d := range days {
		total.completions += d.Completions
		total.shown += d.Shown
		total.accepted += d.Accepted
		var p50, p95 *float64
		if len(d.ServingMs) == 2 {
			p50, p95 = &d.ServingMs[0], &d.ServingMs[1]
		}
		dayList = append(dayList, fiber.Map{
			"day": d.Day.UTC(), "completions": d.Completions, "shown": d.Shown, "accepted": d.Accepted,
			"acceptance_rate": ratio(d.Accepted, d.Shown), "p50_ms": p50, "p95_ms": p95,
		})
	}
	langList := make([]fiber.Map, 0, len(langs))
	for _, l := range langs {
		langList = append(langList, fiber.Map{
			"language": l.LanguageName, "completions": l.Completions, "shown": l.Shown, "accepted": l.Accepted,
			"acceptance_rate": ratio(l.Accepted, l.Shown),
		})
	}
	return c.JSON(fiber.Map{
		"from": f.from.UTC(), "to": f.to.UTC(),
		"total": fiber.Map{"completions": total.completions, "shown": total.shown, "accepted": total.accepted,
			"acceptance_rate": ratio(total.accepted, total.shown)},
		"days": dayList, "languages": langList,
	})
}

// userProjects answers GET /api/user/projects: the projects the caller is
// a member of, newest first, with the caller's role.
func (s *Server) userProjects(c *fiber.Ctx) error {
	rows, err := s.q.ProjectListByUser(c.UserContext(), s.db, principal(c).UserID)
	if err != nil {
		return internal(MsgProjectListError, err)
	}
	items := make([]fiber.Map, 0, len(rows))
	for _, r := range rows {
		items = append(items, fiber.Map{"project_id": r.ProjectID, "project_name": r.ProjectName,
			"role": r.Role, "created_at": r.CreatedAt})
	}
	return c.JSON(fiber.Map{"projects": items})
}
