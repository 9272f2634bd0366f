package config

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func env(m map[string]string) Lookup {
	return func(k string) (string, bool) { v, ok := m[k]; return v, ok }
}

func TestDefaults(t *testing.T) {
	c, err := Load(env(nil))
	if err != nil {
		t.Fatal(err)
	}
	if c.ServerPort != 8008 || c.DataDir != "./data" || c.SessionTokenTTL != 7200*time.Second || c.DefaultRatePerHour != 500 {
		t.Fatalf("unexpected defaults: %+v", c)
	}
	if !c.ManagedPostgres() || !c.ManagedRedis() {
		t.Fatal("with nothing configured, Postgres and Redis must be managed")
	}
	if c.ListenAddr() != "0.0.0.0:8008" {
		t.Fatalf("listen addr %q", c.ListenAddr())
	}
}

func TestBadValuesNameTheVariable(t *testing.T) {
	cases := []struct {
		env  map[string]string
		want string
	}{
		{map[string]string{"SERVER_PORT": "abc"}, "SERVER_PORT"},
		{map[string]string{"SERVER_PORT": "70000"}, "SERVER_PORT"},
		{map[string]string{"DB_PORT": "0"}, "DB_PORT"},
		{map[string]string{"DATABASE_URL": "mysql://x"}, "DATABASE_URL"},
		{map[string]string{"REDIS_URL": "http://x"}, "REDIS_URL"},
		{map[string]string{"SESSION_TOKEN_EXPIRES_IN_SECONDS": "-5"}, "SESSION_TOKEN_EXPIRES_IN_SECONDS"},
		{map[string]string{"EMAIL_USE_TLS": "maybe"}, "EMAIL_USE_TLS"},
		{map[string]string{"MAX_REQUEST_RATE_PER_HOUR_CONFIG": "{bad"}, "MAX_REQUEST_RATE_PER_HOUR_CONFIG"},
		{map[string]string{"MAX_REQUEST_RATE_PER_HOUR_CONFIG": `{"/api/x": 0}`}, "MAX_REQUEST_RATE_PER_HOUR_CONFIG"},
		{map[string]string{"CORS_ALLOWED_ORIGINS": "localhost:3000"}, "CORS_ALLOWED_ORIGINS"},
		{map[string]string{"CORS_ALLOWED_ORIGINS": "*x"}, "CORS_ALLOWED_ORIGINS"},
		{map[string]string{"MAX_HEADER_BYTES": "4096"}, "MAX_HEADER_BYTES"},
		{map[string]string{"WS_MAX_IN_FLIGHT": "0"}, "WS_MAX_IN_FLIGHT"},
		{map[string]string{"WS_MAX_IN_FLIGHT": "65"}, "WS_MAX_IN_FLIGHT"},
		{map[string]string{"LOG_LEVEL": "loud"}, "LOG_LEVEL"},
		{map[string]string{"THREAD_POOL_MAX_WORKERS": "33"}, "THREAD_POOL_MAX_WORKERS"},
		{map[string]string{"ENGINE_THREADS": "-1"}, "ENGINE_THREADS"},
		{map[string]string{"ENGINE_THREADS": "513"}, "ENGINE_THREADS"},
		{map[string]string{"VERIFICATION_URL": "not a url"}, "VERIFICATION_URL"},
		{map[string]string{"DATA_DIR": ""}, "DATA_DIR"},
	}
	for _, tc := range cases {
		_, err := Load(env(tc.env))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: error %v does not name %s", tc.env, err, tc.want)
		}
	}
}

func TestURLsFromParts(t *testing.T) {
	c, err := Load(env(map[string]string{"DB_HOST": "db", "DB_PASSWORD": "p@ss", "REDIS_HOST": "cache", "REDIS_PORT": "6380", "MAX_REQUEST_RATE_PER_HOUR_CONFIG": `{"/api/completion/request": 3000}`}))
	if err != nil {
		t.Fatal(err)
	}
	if c.ManagedPostgres() || c.ManagedRedis() {
		t.Fatal("configured hosts must not be managed")
	}
	if got := c.PostgresURL(); got != "postgres://postgres:p%40ss@db:5432/code4me" {
		t.Fatalf("postgres url %q", got)
	}
	if got := c.RedisAddrURL(); got != "redis://cache:6380/0" {
		t.Fatalf("redis url %q", got)
	}
	if c.RatePerHourByRoute["/api/completion/request"] != 3000 {
		t.Fatal("route limit not parsed")
	}
}

func TestDataDirNotWritable(t *testing.T) {
	if os.Geteuid() == 0 {
		// root writes anywhere; use a path under a regular file instead.
		f := filepath.Join(t.TempDir(), "file")
		os.WriteFile(f, nil, 0o644)
		c := Config{DataDir: filepath.Join(f, "sub")}
		var fe *FieldError
		if err := c.CheckDataDir(); !errors.As(err, &fe) || fe.Var != "DATA_DIR" {
			t.Fatalf("want DATA_DIR error, got %v", err)
		}
		return
	}
	dir := t.TempDir()
	os.Chmod(dir, 0o500)
	c := Config{DataDir: dir}
	if err := c.CheckDataDir(); err == nil || !strings.Contains(err.Error(), "DATA_DIR") {
		t.Fatalf("want DATA_DIR error, got %v", err)
	}
}

func TestVarsDocumented(t *testing.T) {
	for _, v := range Vars() {
		if v.Name == "" || v.Doc == "" {
			t.Errorf("variable %+v lacks a name or doc", v)
		}
	}
}
