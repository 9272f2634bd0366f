package server

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/gofiber/fiber/v2"
	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/code4me/code4me/engine"
	"github.com/code4me/code4me/internal/db"
	"github.com/code4me/code4me/internal/hocon"
	"github.com/code4me/code4me/models"
)

// Config administration: the configs handed to plugins at login, the
// programming languages telemetry refers to, the registered models, and
// who is an admin. Every route is under /api/config and admin-only
// (guardAdmin); errors are {"detail": text}. The fixed paths
// (/languages, /models, /users) are registered before /{config_id}, and
// config ids are parsed by the handlers, so those paths are never taken
// for a config id.

// Messages of the config administration routes.
const (
	MsgAdminError          = "Server failed to administer the configuration."
	MsgAdminConfigNotFound = "Config not found"
	MsgLanguageNotFound    = "Language not found"
	MsgModelNotFound       = "Model not found"
	MsgRevokeOwnAdmin      = "You cannot revoke your own admin privileges; ask another admin."
)

func (s *Server) configAdminRoutes(api fiber.Router) {
	g := api.Group("/config")
	g.Get("/", s.guardAdmin(s.configList)...)
	g.Post("/", s.guardAdmin(s.configCreate)...)
	g.Get("/languages", s.guardAdmin(s.languageList)...)
	g.Post("/languages", s.guardAdmin(s.languageCreate)...)
	g.Put("/languages/:language_id", s.guardAdmin(s.languageUpdate)...)
	g.Delete("/languages/:language_id", s.guardAdmin(s.languageDelete)...)
	g.Get("/models", s.guardAdmin(s.modelList)...)
	g.Delete("/models/:model_id", s.guardAdmin(s.modelDelete)...)
	g.Put("/users/:user_id/admin", s.guardAdmin(s.userSetAdmin)...)
	g.Get("/:config_id", s.guardAdmin(s.configGet)...)
	g.Put("/:config_id", s.guardAdmin(s.configUpdate)...)
	g.Delete("/:config_id", s.guardAdmin(s.configDelete)...)
}

// pathInt reads the integer path parameter name. A bad one is a 422 entry
// added to f when f is given (so it is answered with the body's errors),
// else returned.
func pathInt(c *fiber.Ctx, name string, f *fields) (int64, error) {
	raw := c.Params(name)
	n, err := strconv.ParseInt(raw, 10, 64)
	if err == nil {
		return n, nil
	}
	fe := fieldError{Type: "int_parsing", Loc: []any{"path", name},
		Msg: "Input should be a valid integer, unable to parse string as an integer", Input: raw}
	if f != nil {
		*f.errs = append(*f.errs, fe)
		return 0, nil
	}
	return 0, &validationError{errs: []fieldError{fe}}
}

// configJSON is a config as the routes answer it: config_data is the
// parsed document when it is a JSON object, else the text.
func configJSON(cfg models.Config) fiber.Map {
	var data any = cfg.ConfigData
	if t := bytes.TrimSpace([]byte(cfg.ConfigData)); len(t) > 0 && t[0] == '{' && json.Valid(t) {
		data = json.RawMessage(t)
	}
	return fiber.Map{"config_id": cfg.ConfigID, "config_data": data}
}

// configData reads a body's config_data: an object, stored as its JSON, or
// a string of HOCON text (JSON included), stored verbatim once it parses.
// Anything else, and text that does not parse, is a 422 that says where.
func configData(f *fields) string {
	raw, ok := f.get("config_data", true)
	if !ok {
		return ""
	}
	switch raw[0] {
	case '{':
		var b bytes.Buffer
		if err := json.Compact(&b, raw); err != nil { // checked when the body was read
			f.add("json_invalid", "config_data", "Invalid JSON", rawInput(raw), nil)
			return ""
		}
		return b.String()
	case '"':
		text, _ := f.str("config_data", true, 0, 0)
		if err := hocon.Validate(text); err != nil {
			f.add("value_error", "config_data", "Value error, config_data is not valid HOCON: "+err.Error(), text,
				map[string]any{"error": err.Error()})
			return ""
		}
		return text
	}
	f.add("value_error", "config_data", "Input should be an object or a string of HOCON text", rawInput(raw), nil)
	return ""
}

// GET /api/config/: every config.
func (s *Server) configList(c *fiber.Ctx) error {
	cfgs, err := s.q.ConfigList(c.UserContext(), s.db)
	if err != nil {
		return internalDetail(MsgAdminError, err)
	}
	out := make([]fiber.Map, len(cfgs))
	for i, cfg := range cfgs {
		out[i] = configJSON(cfg)
	}
	return c.JSON(fiber.Map{"configs": out})
}

// GET /api/config/{config_id}.
func (s *Server) configGet(c *fiber.Ctx) error {
	id, err := pathInt(c, "config_id", nil)
	if err != nil {
		return err
	}
	cfg, err := s.q.ConfigGetByID(c.UserContext(), s.db, id)
	if errors.Is(db.Translate(err), db.ErrNotFound) {
		return failDetail(fiber.StatusNotFound, MsgAdminConfigNotFound)
	}
	if err != nil {
		return internalDetail(MsgAdminError, err)
	}
	return c.JSON(configJSON(cfg))
}

// POST /api/config/ {"config_data"}: 201 with the new config.
func (s *Server) configCreate(c *fiber.Ctx) error {
	f, err := jsonBody(c)
	if err != nil {
		return err
	}
	data := configData(f)
	if err := f.err(); err != nil {
		return err
	}
	var cfg models.Config
	err = s.auditedTx(c, "create", "configs", func(tx pgx.Tx) (string, any, any, error) {
		var err error
		cfg, err = s.q.ConfigCreate(c.UserContext(), tx, data)
		return strconv.FormatInt(cfg.ConfigID, 10), nil, configJSON(cfg), err
	})
	if err != nil {
		return internalDetail(MsgAdminError, err)
	}
	return c.Status(fiber.StatusCreated).JSON(configJSON(cfg))
}

// PUT /api/config/{config_id} {"config_data"}: replaces the document.
func (s *Server) configUpdate(c *fiber.Ctx) error {
	f, err := jsonBody(c)
	if err != nil {
		return err
	}
	id, _ := pathInt(c, "config_id", f)
	data := configData(f)
	if err := f.err(); err != nil {
		return err
	}
	var cfg models.Config
	err = s.auditedTx(c, "update", "configs", func(tx pgx.Tx) (string, any, any, error) {
		before, err := s.q.ConfigGetByID(c.UserContext(), tx, id)
		if err != nil {
			return "", nil, nil, err
		}
		cfg, err = s.q.ConfigUpdate(c.UserContext(), tx, models.ConfigUpdateParams{ConfigData: data, ConfigID: id})
		return strconv.FormatInt(id, 10), configJSON(before), configJSON(cfg), err
	})
	if errors.Is(db.Translate(err), db.ErrNotFound) {
		return failDetail(fiber.StatusNotFound, MsgAdminConfigNotFound)
	}
	if err != nil {
		return internalDetail(MsgAdminError, err)
	}
	return c.JSON(configJSON(cfg))
}

// DELETE /api/config/{config_id}: 409, saying what uses it, while users,
// studies, study arms, assignments or recorded queries refer to it.
func (s *Server) configDelete(c *fiber.Ctx) error {
	id, err := pathInt(c, "config_id", nil)
	if err != nil {
		return err
	}
	ctx := c.UserContext()
	var n int64
	err = s.auditedTx(c, "delete", "configs", func(tx pgx.Tx) (string, any, any, error) {
		before, err := s.q.ConfigGetByID(ctx, tx, id)
		if err != nil {
			return "", nil, nil, err
		}
		n, err = s.q.ConfigDelete(ctx, tx, id)
		return strconv.FormatInt(id, 10), configJSON(before), nil, err
	})
	if errors.Is(db.Translate(err), db.ErrNotFound) {
		return failDetail(fiber.StatusNotFound, MsgAdminConfigNotFound)
	}
	if db.IsForeignKeyViolation(err, "") {
		refs, rerr := s.q.ConfigReferenceCounts(ctx, s.db, id)
		if rerr != nil {
			return internalDetail(MsgAdminError, rerr)
		}
		return failDetail(fiber.StatusConflict, configInUse(id, refs))
	}
	if err != nil {
		return internalDetail(MsgAdminError, err)
	}
	if n == 0 {
		return failDetail(fiber.StatusNotFound, MsgAdminConfigNotFound)
	}
	return c.JSON(fiber.Map{"deleted": true, "config_id": id})
}

// configInUse is the 409 message of a config that cannot be deleted.
func configInUse(id int64, r models.ConfigReferenceCountsRow) string {
	var uses []string
	for _, u := range []struct {
		n         int64
		one, many string
	}{
		{r.Users, "user", "users"},
		{r.StudyArms, "study arm", "study arms"}, {r.Assignments, "config assignment", "config assignments"},
		{r.Queries, "recorded query", "recorded queries"},
	} {
		switch {
		case u.n == 1:
			uses = append(uses, "1 "+u.one)
		case u.n > 1:
			uses = append(uses, fmt.Sprintf("%d %s", u.n, u.many))
		}
	}
	if len(uses) == 0 { // the references went away after the delete failed
		return fmt.Sprintf("Config %d is still in use; try again.", id)
	}
	return fmt.Sprintf("Config %d is still used by %s; assign them another config before deleting it.",
		id, strings.Join(uses, ", "))
}

// GET /api/config/languages: {"languages": [...], "mapping": {name: id}}.
func (s *Server) languageList(c *fiber.Ctx) error {
	langs, err := s.q.LanguageList(c.UserContext(), s.db)
	if err != nil {
		return internalDetail(MsgAdminError, err)
	}
	mapping := make(map[string]int64, len(langs))
	for _, l := range langs {
		mapping[l.LanguageName] = l.LanguageID
	}
	return c.JSON(fiber.Map{"languages": langs, "mapping": mapping})
}

// maxLanguageName bounds a language's name.
const maxLanguageName = 100

// languageTaken is the 409 of a language name already in the table.
func languageTaken(name string) error {
	return failDetail(fiber.StatusConflict, fmt.Sprintf("A language named %q already exists.", name))
}

// POST /api/config/languages {"language_name"}: 201 with the new language.
func (s *Server) languageCreate(c *fiber.Ctx) error {
	f, err := jsonBody(c)
	if err != nil {
		return err
	}
	name, _ := f.str("language_name", true, 1, maxLanguageName)
	if err := f.err(); err != nil {
		return err
	}
	var l models.ProgrammingLanguage
	err = s.auditedTx(c, "create", "languages", func(tx pgx.Tx) (string, any, any, error) {
		var err error
		l, err = s.q.LanguageCreate(c.UserContext(), tx, name)
		return strconv.FormatInt(l.LanguageID, 10), nil, l, err
	})
	if db.IsUniqueViolation(err, "") {
		return languageTaken(name)
	}
	if err != nil {
		return internalDetail(MsgAdminError, err)
	}
	return c.Status(fiber.StatusCreated).JSON(l)
}

// PUT /api/config/languages/{language_id} {"language_name"}: renames it.
func (s *Server) languageUpdate(c *fiber.Ctx) error {
	f, err := jsonBody(c)
	if err != nil {
		return err
	}
	id, _ := pathInt(c, "language_id", f)
	name, _ := f.str("language_name", true, 1, maxLanguageName)
	if err := f.err(); err != nil {
		return err
	}
	var l models.ProgrammingLanguage
	err = s.auditedTx(c, "update", "languages", func(tx pgx.Tx) (string, any, any, error) {
		before, err := s.q.AdminLanguageGetByID(c.UserContext(), tx, id)
		if err != nil {
			return "", nil, nil, err
		}
		l, err = s.q.LanguageUpdate(c.UserContext(), tx, models.LanguageUpdateParams{LanguageName: name, LanguageID: id})
		return strconv.FormatInt(id, 10), before, l, err
	})
	switch {
	case errors.Is(db.Translate(err), db.ErrNotFound):
		return failDetail(fiber.StatusNotFound, MsgLanguageNotFound)
	case db.IsUniqueViolation(err, ""):
		return languageTaken(name)
	case err != nil:
		return internalDetail(MsgAdminError, err)
	}
	return c.JSON(l)
}

// DELETE /api/config/languages/{language_id}: 409 while telemetry refers
// to it.
func (s *Server) languageDelete(c *fiber.Ctx) error {
	id, err := pathInt(c, "language_id", nil)
	if err != nil {
		return err
	}
	var n int64
	err = s.auditedTx(c, "delete", "languages", func(tx pgx.Tx) (string, any, any, error) {
		before, err := s.q.AdminLanguageGetByID(c.UserContext(), tx, id)
		if err != nil {
			return "", nil, nil, err
		}
		n, err = s.q.LanguageDelete(c.UserContext(), tx, id)
		return strconv.FormatInt(id, 10), before, nil, err
	})
	switch {
	case errors.Is(db.Translate(err), db.ErrNotFound):
		return failDetail(fiber.StatusNotFound, MsgLanguageNotFound)
	case db.IsForeignKeyViolation(err, ""):
		return failDetail(fiber.StatusConflict, fmt.Sprintf(
			"Language %d is still used by recorded completion telemetry, so it cannot be deleted; rename it instead.", id))
	case err != nil:
		return internalDetail(MsgAdminError, err)
	case n == 0:
		return failDetail(fiber.StatusNotFound, MsgLanguageNotFound)
	}
	return c.JSON(fiber.Map{"deleted": true, "language_id": id})
}

// GET /api/config/models: {"models": [...]}, every registered model;
// loaded says whether this server serves it now. A model the server's
// own engine has loaded also shows its engine state now: slots, busy
// slots, requests queued for a slot, the bytes of its weights and its KV
// cache's cells; these are null for the others, and on an API node of the
// worker tier, whose workers show theirs in GET /api/admin/workers.
func (s *Server) modelList(c *fiber.Ctx) error {
	ms, err := s.q.ModelList(c.UserContext(), s.db)
	if err != nil {
		return internalDetail(MsgAdminError, err)
	}
	stats := map[string]engine.Stats{}
	if s.plugin.engine != nil {
		for _, st := range s.plugin.engine.Stats() {
			stats[st.Model] = st
		}
	}
	out := make([]fiber.Map, len(ms))
	for i, m := range ms {
		reg, loaded := s.plugin.models.Get(m.ModelID)
		row := fiber.Map{"model_id": m.ModelID, "model_name": m.Name, "family": m.Family, "is_chat": m.IsChat,
			"is_synthetic": m.IsSynthetic, "loaded": loaded, "registered_at": m.RegisteredAt, "last_loaded_at": m.LastLoadedAt,
			"slots": nil, "slots_busy": nil, "queue_len": nil, "weights_bytes": nil, "kv_cells": nil}
		if st, ok := stats[reg.Name]; loaded && ok {
			row["slots"], row["slots_busy"], row["queue_len"] = st.Slots, st.SlotsBusy, st.QueueLen
			row["weights_bytes"], row["kv_cells"] = st.Info.SizeBytes, st.NCtx
		}
		out[i] = row
	}
	return c.JSON(fiber.Map{"models": out})
}

// DELETE /api/config/models/{model_id}: removes a registered model that
// this server does not serve and no generation or ground truth refers to.
// Models are registered by the engine when it loads their files, so there
// is no route to create one.
func (s *Server) modelDelete(c *fiber.Ctx) error {
	id, err := pathInt(c, "model_id", nil)
	if err != nil {
		return err
	}
	if _, loaded := s.plugin.models.Get(id); loaded {
		return failDetail(fiber.StatusConflict, fmt.Sprintf(
			"Model %d is loaded by this server, so it cannot be deleted; remove it from the server's models and restart first.", id))
	}
	var n int64
	err = s.auditedTx(c, "delete", "models", func(tx pgx.Tx) (string, any, any, error) {
		before, err := s.q.ModelGetByID(c.UserContext(), tx, id)
		if err != nil {
			return "", nil, nil, err
		}
		n, err = s.q.ModelDelete(c.UserContext(), tx, id)
		return strconv.FormatInt(id, 10), before, nil, err
	})
	switch {
	case errors.Is(db.Translate(err), db.ErrNotFound):
		return failDetail(fiber.StatusNotFound, MsgModelNotFound)
	case db.IsForeignKeyViolation(err, ""):
		return failDetail(fiber.StatusConflict, fmt.Sprintf(
			"Model %d is still used by recorded generations or ground truths, so it cannot be deleted.", id))
	case err != nil:
		return internalDetail(MsgAdminError, err)
	case n == 0:
		return failDetail(fiber.StatusNotFound, MsgModelNotFound)
	}
	return c.JSON(fiber.Map{"deleted": true, "model_id": id})
}

// PUT /api/config/users/{user_id}/admin {"is_admin"}: grants or revokes
// admin privileges; the only way to change users.is_admin. An admin cannot
// revoke their own (409), so the last admin cannot lock everyone out.
func (s *Server) userSetAdmin(c *fiber.Ctx) error {
	f, err := jsonBody(c)
	if err != nil {
		return err
	}
	raw := c.Params("user_id")
	id, perr := uuid.Parse(raw)
	if perr != nil {
		*f.errs = append(*f.errs, fieldError{Type: "uuid_parsing", Loc: []any{"path", "user_id"},
			Msg: "Input should be a valid UUID", Input: raw})
	}
	isAdmin, _ := f.boolean("is_admin", true)
	if err := f.err(); err != nil {
		return err
	}
	ctx := c.UserContext()
	if id == principal(c).UserID && !isAdmin {
		return failDetail(fiber.StatusConflict, MsgRevokeOwnAdmin)
	}
	err = s.auditedTx(c, "update", "users", func(tx pgx.Tx) (string, any, any, error) {
		if _, err := s.q.AdminUserLock(ctx, tx, id); err != nil {
			return "", nil, nil, err
		}
		u, err := s.q.UserGetByID(ctx, tx, id)
		if err != nil {
			return "", nil, nil, err
		}
		before := userAudit{UserID: id, IsAdmin: u.IsAdmin, Verified: u.Verified, VerifiedAt: u.VerifiedAt}
		after := before
		after.IsAdmin = isAdmin
		return id.String(), before, after, s.q.UserSetAdmin(ctx, tx, models.UserSetAdminParams{IsAdmin: isAdmin, UserID: id})
	})
	if errors.Is(db.Translate(err), db.ErrNotFound) {
		return failDetail(fiber.StatusNotFound, MsgUserNotFound)
	}
	if err != nil {
		return internalDetail(MsgAdminError, err)
	}
	return c.JSON(fiber.Map{"user_id": id, "is_admin": isAdmin})
}
