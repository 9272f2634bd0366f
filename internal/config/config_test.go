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
		{map[string]string{"ENGINE_MIXED_PREFILL": "-1"}, "ENGINE_MIXED_PREFILL"},
		{map[string]string{"ENGINE_PROMPT_CACHE_MIB": "-1"}, "ENGINE_PROMPT_CACHE_MIB"},
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

// TestPromptSplit: MODEL_PROMPT_SPLIT maps model names to token caps, each
// optional; a negative or huge cap, an unknown key, a value that is not an
// object of caps and data after the object are refused with an error that
// names the variable and says what is wrong.
func TestPromptSplit(t *testing.T) {
	c, err := Load(env(nil))
	if err != nil {
		t.Fatal(err)
	}
	if len(c.PromptSplitByModel) != 0 {
		t.Errorf("default %v, want none", c.PromptSplitByModel)
	}
	c, err = Load(env(map[string]string{"MODEL_PROMPT_SPLIT": ` {"big": {"extra": 2048, "prefix": 1024, "suffix": 256}, "small": {"suffix": 8}, "none": {}} `}))
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]PromptSplit{"big": {Extra: 2048, Prefix: 1024, Suffix: 256}, "small": {Suffix: 8}, "none": {}}
	if len(c.PromptSplitByModel) != len(want) {
		t.Errorf("got %v, want %v", c.PromptSplitByModel, want)
	}
	for name, s := range want {
		if c.PromptSplitByModel[name] != s {
			t.Errorf("%s: %+v, want %+v", name, c.PromptSplitByModel[name], s)
		}
	}
	for _, tc := range []struct{ value, want string }{
		{`{"m": {"suffix": -1}}`, `entry "m": suffix -1 is out of range 0-1048576 tokens`},
		{`{"m": {"extra": 1048577}}`, `entry "m": extra 1048577 is out of range`},
		{`{"m": {"prefx": 10}}`, `unknown field "prefx"`},
		{`{"m": 256}`, `not a JSON object of model name to {"extra": N, "prefix": N, "suffix": N}`},
		{`{"m": {"prefix": 1.5}}`, `not a JSON object of model name`},
		{`{"m": {}} {}`, `data after the object`},
		{`{"": {"prefix": 10}}`, `an entry has no model name`},
		{`{bad`, `not a JSON object of model name`},
	} {
		_, err := Load(env(map[string]string{"MODEL_PROMPT_SPLIT": tc.value}))
		if err == nil || !strings.Contains(err.Error(), "MODEL_PROMPT_SPLIT") || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: error %v, want one naming MODEL_PROMPT_SPLIT and saying %q", tc.value, err, tc.want)
		}
	}
}
