package server

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"math"
	"net/http/httptest"
	"slices"
	"testing"
	"unicode/utf8"

	"github.com/gofiber/fiber/v2"
	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/code4me/code4me/internal/oauth"
	"github.com/code4me/code4me/models"
)

// userFuzzApp serves the user handlers whose bodies the fuzz targets
// read, on a server whose database pool is closed and whose Google
// sign-in is off: a body that passes validation reaches the first query,
// which answers 503 at once, so each input costs a parse and no I/O. A
// body that fails answers 422 before anything else runs.
func userFuzzApp(f *testing.F) *fiber.App {
	pool, err := pgxpool.New(context.Background(), "postgres://fuzz@127.0.0.1:1/fuzz")
	if err != nil {
		f.Fatal(err)
	}
	pool.Close()
	s := &Server{log: slog.New(slog.DiscardHandler), db: pool, q: models.New(), oauth: oauth.New(oauth.Options{})}
	app := fiber.New(fiber.Config{ErrorHandler: s.errorHandler})
	app.Use(func(c *fiber.Ctx) error {
		c.Locals(localsPrincipal, &Principal{UserID: uuid.New()})
		return c.Next()
	})
	app.Post("/api/user/create", s.userCreate)
	app.Post("/api/user/authenticate", s.userAuthenticate)
	app.Put("/api/user/update", s.userUpdate)
	return app
}

// userBodies are user request bodies near the valid ones.
var userBodies = []string{
	`{"email":"a@example.com","name":"Tester","password":"Secret123","config_id":1}`,
	`{"email":" A@Example.COM ","name":"Tes","password":"Secret123","config_id":0,"provider":"no_provider"}`,
	`{"email":"a@b","name":"xy","password":"secret","config_id":-1,"provider":"github","token":"t"}`,
	`{"email":"a@example.com","password":"Secret123"}`,
	`{"token":"x.y.z","provider":"google"}`, `{"provider":"google"}`, `{"email":null,"password":null}`,
	`{"name":"New name","email":"b@example.com","previous_password":"Secret123","password":"Secret456","preference":{"a":1},"config_id":2,"verified":true}`,
	`{"password":"short","previous_password":"x","preference":[],"verified":"maybe","config_id":0}`,
}

// fuzzUserRoute posts body to a user route and checks the answer: a 422
// in the house shape that never echoes the route's secrets, or the
// status of a body that passed validation (the database being down:
// 503; Google sign-in being off: 401) for a body whose fields have the
// types valid reports (encoding/json's reading of the body).
func fuzzUserRoute(t *testing.T, app *fiber.App, method, path string, body []byte, secrets []string, valid func(doc map[string]any) bool) {
	req := httptest.NewRequest(method, path, bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	res, err := app.Test(req, 10_000)
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if res.StatusCode != 422 {
		if res.StatusCode != 503 && res.StatusCode != 401 {
			t.Fatalf("%s %q: %d %s", path, body, res.StatusCode, raw)
		}
		var doc map[string]any
		d := json.NewDecoder(bytes.NewReader(body))
		d.UseNumber()
		if d.Decode(&doc) != nil || doc == nil || !utf8.Valid(body) || hasNUL(doc) || !valid(doc) {
			t.Fatalf("%s %q passed validation (%d %s)", path, body, res.StatusCode, raw)
		}
		return
	}
	for _, e := range check422(t, res.StatusCode, raw, body) {
		loc := e["loc"].([]any)
		last, _ := loc[len(loc)-1].(string)
		if slices.Contains(secrets, last) && e["input"] != "**********" {
			t.Fatalf("%s %q: the 422 echoes %s: %v", path, body, last, e)
		}
		if m, ok := e["input"].(map[string]any); ok {
			for k, v := range m {
				if slices.Contains(secrets, k) && v != "**********" {
					t.Fatalf("%s %q: the 422 echoes %s: %v", path, body, k, e)
				}
			}
		}
	}
}

// isString, isInt and isObject report what encoding/json read at a key;
// opt allows the key to be absent or null.
func isString(doc map[string]any, k string, opt bool) bool {
	_, ok := doc[k].(string)
	return ok || opt && doc[k] == nil
}

func isInt(doc map[string]any, k string, opt bool) bool {
	n, ok := doc[k].(json.Number)
	fl, err := n.Float64()
	return ok && err == nil && fl == math.Trunc(fl) || opt && doc[k] == nil
}

func runes(doc map[string]any, k string) int {
	s, _ := doc[k].(string)
	return utf8.RuneCountInString(s)
}

// FuzzUserCreate: POST /api/user/create.
func FuzzUserCreate(f *testing.F) {
	for _, b := range append(append([]string{}, userBodies...), fuzzBodies...) {
		f.Add([]byte(b))
	}
	app := userFuzzApp(f)
	f.Fuzz(func(t *testing.T, body []byte) {
		fuzzUserRoute(t, app, "POST", "/api/user/create", body, []string{"password", "token"}, func(doc map[string]any) bool {
			pw, _ := doc["password"].(string)
			return isString(doc, "email", false) && isString(doc, "name", false) && runes(doc, "name") >= 3 &&
				runes(doc, "name") <= 50 && passwordOK(pw) && runes(doc, "password") <= 50 && isInt(doc, "config_id", false) &&
				isString(doc, "token", true) && isString(doc, "provider", true)
		})
	})
}

// FuzzUserAuthenticate: POST /api/user/authenticate, with a Google token
// or with an email and a password.
func FuzzUserAuthenticate(f *testing.F) {
	for _, b := range append(append([]string{}, userBodies...), fuzzBodies...) {
		f.Add([]byte(b))
	}
	app := userFuzzApp(f)
	f.Fuzz(func(t *testing.T, body []byte) {
		fuzzUserRoute(t, app, "POST", "/api/user/authenticate", body, []string{"password", "token"}, func(doc map[string]any) bool {
			if doc["token"] != nil || doc["provider"] != nil && doc["email"] == nil {
				return isString(doc, "token", false) && isString(doc, "provider", true)
			}
			return isString(doc, "email", false) && isString(doc, "password", false)
		})
	})
}

// FuzzUserUpdate: PUT /api/user/update, every field optional.
func FuzzUserUpdate(f *testing.F) {
	for _, b := range append(append([]string{}, userBodies...), fuzzBodies...) {
		f.Add([]byte(b))
	}
	app := userFuzzApp(f)
	f.Fuzz(func(t *testing.T, body []byte) {
		fuzzUserRoute(t, app, "PUT", "/api/user/update", body, []string{"password", "previous_password"}, func(doc map[string]any) bool {
			_, isObj := doc["preference"].(map[string]any)
			_, isBool := doc["verified"].(bool)
			pw, hasPw := doc["password"].(string)
			return isString(doc, "name", true) && (doc["name"] == nil || runes(doc, "name") >= 3 && runes(doc, "name") <= 50) &&
				isString(doc, "email", true) && isString(doc, "previous_password", true) && (!hasPw && doc["password"] == nil || passwordOK(pw)) &&
				(isObj || doc["preference"] == nil) && (isBool || doc["verified"] == nil) && isInt(doc, "config_id", true)
		})
	})
}
