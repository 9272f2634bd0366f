// Package config holds code4me's one typed configuration. Values come from
// the environment (and an optional .env file, read by cmd); every field
// names its variable, its default and its meaning in struct tags, which also
// generate docs/configuration.md. Validate names the offending variable.
package config

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"net/mail"
	"net/url"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Config is the whole configuration of the server and its tools. The field
// tags are the contract: env is the variable, def its default, doc its
// meaning.
type Config struct {
	// Server
	ServerHost      string   `env:"SERVER_HOST" def:"0.0.0.0" doc:"Address the HTTP server binds."`
	ServerPort      int      `env:"SERVER_PORT" def:"8008" doc:"Port the HTTP server listens on."`
	ServerVersionID int64    `env:"SERVER_VERSION_ID" def:"1" doc:"Stored with every query as server_version_id."`
	DataDir         string   `env:"DATA_DIR" def:"./data" doc:"Directory for private Postgres/Redis data, synthetic models, mail files."`
	LogLevel        string   `env:"LOG_LEVEL" def:"info" doc:"debug, info, warn or error."`
	LogFormat       string   `env:"LOG_FORMAT" def:"text" doc:"text or json."`
	MaxBodyBytes    int      `env:"MAX_BODY_BYTES" def:"4194304" doc:"Largest accepted request body; larger bodies get 413. Also the largest WebSocket frame: a larger one closes the connection with 1009 (message too big)."`
	MaxHeaderBytes  int      `env:"MAX_HEADER_BYTES" def:"32768" doc:"Room for a request's line and headers (16384-1048576); a request that needs more gets 431. Browsers send cookies of up to 4 KiB each and proxies pass 8-16 KiB of headers."`
	CookieSecure    bool     `env:"COOKIE_SECURE" def:"false" doc:"Set the Secure attribute on cookies (enable behind HTTPS)."`
	CORSOrigins     []string `env:"CORS_ALLOWED_ORIGINS" def:"http://localhost:3000,http://127.0.0.1:3000" doc:"Comma-separated origins allowed by CORS (credentials allowed), * for any. Also the origins allowed to open a WebSocket: a handshake with another Origin header gets 403 (editor plugins send none and are allowed)."`
	WSMaxInFlight   int      `env:"WS_MAX_IN_FLIGHT" def:"4" doc:"Requests running at once on one WebSocket connection (1-64); a request frame over it gets an error frame (429) and starts nothing. A cancelled or superseded request stops counting at once, so a completion_request that supersedes the running one always starts."`
	TrustedProxies  []string `env:"TRUSTED_PROXIES" def:"" doc:"Comma-separated proxy IPs/CIDRs whose X-Forwarded-For is trusted for the client IP."`

	// Editor clients (docs/clients.md)
	LlamaListen string `env:"LLAMA_LISTEN" def:"" doc:"A second host:port the same server listens on, for clients of the llama.cpp server API: 127.0.0.1:8012 is llama.vim's default endpoint. Empty: none."`
	OpenUser    string `env:"OPEN_USER" def:"local@code4me.localhost" doc:"Email of the user that serve --open acts as for requests from this machine that carry no credentials (created when absent). serve --open refuses to start unless SERVER_HOST and LLAMA_LISTEN are loopback addresses."`

	// Shutdown
	ShutdownGrace time.Duration `env:"SHUTDOWN_GRACE" def:"10" unit:"s" doc:"Seconds that requests and WebSocket requests in flight get to finish on SIGTERM or SIGINT; new requests get 503 meanwhile, and WebSockets the close code 1001 once their requests have ended."`

	// Jobs
	RetentionInterval time.Duration `env:"RETENTION_INTERVAL" def:"600" unit:"s" doc:"Seconds between runs of the retention job, which deletes the worker tier's finished engine requests (River jobs whose arguments hold the prompt) an hour after they finish, and workers silent for an hour. River's leader runs it, and once at start-up."`

	// Metrics (docs/metrics.md)
	MetricsToken    string `env:"METRICS_TOKEN" def:"" doc:"Bearer token that lets a scraper read GET /metrics (Authorization: Bearer <token>); at least 16 characters. Empty: only admins read it (and this machine, with METRICS_LOOPBACK)." secret:"true"`
	MetricsLoopback bool   `env:"METRICS_LOOPBACK" def:"false" doc:"Let GET /metrics answer every request whose TCP peer is this machine (127.0.0.0/8, ::1) and that carries no X-Forwarded-For, Forwarded or X-Real-IP header, without credentials. Leave it off behind a reverse proxy on the same machine that adds none of those headers."`

	// Postgres
	DatabaseURL string `env:"DATABASE_URL" def:"" doc:"Postgres URL. When neither it nor DB_HOST is set, a private server is started under DATA_DIR."`
	DBHost      string `env:"DB_HOST" def:"" doc:"Postgres host (used when DATABASE_URL is empty)."`
	DBPort      int    `env:"DB_PORT" def:"5432" doc:"Postgres port."`
	DBUser      string `env:"DB_USER" def:"postgres" doc:"Postgres user."`
	DBPassword  string `env:"DB_PASSWORD" def:"" doc:"Postgres password." secret:"true"`
	DBName      string `env:"DB_NAME" def:"code4me" doc:"Postgres database name."`
	DBPoolSize  int    `env:"DB_POOL_SIZE" def:"20" doc:"Maximum open Postgres connections."`

	DBStatementTimeout time.Duration `env:"DB_STATEMENT_TIMEOUT" def:"5" unit:"s" doc:"Seconds a Postgres statement may run (its statement_timeout); on a server that does not answer, the client gives up one second later. Either way the request gets 503."`

	// Redis
	RedisURL  string `env:"REDIS_URL" def:"" doc:"Redis URL. When neither it nor REDIS_HOST is set, a private server is started under DATA_DIR."`
	RedisHost string `env:"REDIS_HOST" def:"" doc:"Redis host (used when REDIS_URL is empty)."`
	RedisPort int    `env:"REDIS_PORT" def:"6379" doc:"Redis port."`

	// Tokens
	AuthTokenTTL         time.Duration `env:"AUTHENTICATION_TOKEN_EXPIRES_IN_SECONDS" def:"86400" unit:"s" doc:"Lifetime of the auth token and its cookie."`
	SessionTokenTTL      time.Duration `env:"SESSION_TOKEN_EXPIRES_IN_SECONDS" def:"7200" unit:"s" doc:"Idle lifetime of a session token; refreshed by activity."`
	VerificationTokenTTL time.Duration `env:"EMAIL_VERIFICATION_TOKEN_EXPIRES_IN_SECONDS" def:"86400" unit:"s" doc:"Lifetime of an email verification token."`
	ResetTokenTTL        time.Duration `env:"RESET_PASSWORD_TOKEN_EXPIRES_IN_SECONDS" def:"900" unit:"s" doc:"Lifetime of a password reset token."`
	TokenHookActivation  time.Duration `env:"TOKEN_HOOK_ACTIVATION_IN_SECONDS" def:"10" unit:"s" doc:"Hook keys expire this long before the token they guard."`

	// Rate limits
	DefaultRatePerHour int            `env:"DEFAULT_MAX_REQUEST_RATE_PER_HOUR" def:"500" doc:"Requests per hour per user (or IP before login) and route."`
	RatePerHourByRoute map[string]int `env:"MAX_REQUEST_RATE_PER_HOUR_CONFIG" def:"{}" doc:"JSON object: route template (e.g. /api/completion/request) to requests per hour."`

	// Mail
	EmailHost       string `env:"EMAIL_HOST" def:"" doc:"SMTP host. Empty: messages are written as .eml files under DATA_DIR/mail."`
	EmailPort       int    `env:"EMAIL_PORT" def:"587" doc:"SMTP port."`
	EmailUsername   string `env:"EMAIL_USERNAME" def:"" doc:"SMTP user; empty disables SMTP auth."`
	EmailPassword   string `env:"EMAIL_PASSWORD" def:"" doc:"SMTP password." secret:"true"`
	EmailUseTLS     bool   `env:"EMAIL_USE_TLS" def:"true" doc:"Use STARTTLS."`
	EmailFrom       string `env:"EMAIL_FROM" def:"code4me <noreply@localhost>" doc:"From address of outgoing mail."`
	VerificationURL string `env:"VERIFICATION_URL" def:"http://localhost:8008/api/user/verify/" doc:"Base of verification links; ?token=... is appended."`
	ResetURL        string `env:"RESET_PASSWORD_URL" def:"http://localhost:8008/api/user/reset-password/" doc:"Base of password reset links; ?token=... is appended."`

	// OAuth
	GoogleClientID string `env:"GOOGLE_CLIENT_ID" def:"" doc:"Google OAuth client id; ID tokens must carry it as audience. Empty disables Google sign-in."`

	// Data export
	ExportSyncMaxQueries int           `env:"EXPORT_SYNC_MAX_QUERIES" def:"5000" doc:"Most queries a user may have for GET /api/user/export to stream their data at once; a user with more gets 202 and the export is built by a job, stored gzip-compressed and downloaded from its status_url (docs/api.md). 0: every user with a query."`
	ExportTTL            time.Duration `env:"EXPORT_TTL" def:"86400" unit:"s" doc:"Seconds an export built by a job can be downloaded once it is ready (one that never gets ready goes this long after the request); then it answers 410 until an hourly job deletes it."`

	// Models and engine
	Models              []string       `env:"MODELS" def:"" doc:"Comma-separated models to load: catalog names, or paths to GGUF files. Empty: every model under MODEL_DIR, else a synthetic model."`
	ModelDir            string         `env:"MODEL_DIR" def:"" doc:"Where pulled and synthetic models live. Default DATA_DIR/models."`
	SyntheticShape      string         `env:"SYNTHETIC_MODEL" def:"tiny" doc:"Shape of the synthetic model used when no real model is available (tiny, qwen2.5-coder-0.5b, ...)."`
	NParallel           int            `env:"ENGINE_PARALLEL" def:"4" doc:"Slots (concurrent sequences) per loaded model."`
	NCtx                int            `env:"ENGINE_CTX" def:"8192" doc:"KV cells per slot."`
	NBatch              int            `env:"ENGINE_BATCH" def:"512" doc:"Tokens per decode call."`
	MixedPrefill        int            `env:"ENGINE_MIXED_PREFILL" def:"0" doc:"Most prompt tokens a decode call takes while requests are generating; 0 = no cap, the whole batch (as llama.cpp's server): a generating request then ends when the prompts in flight are done; a small cap lets it end first, at the cost of evaluating those prompts in small, slower chunks on a CPU (docs/context.md) (0-65536)."`
	NThreads            int            `env:"ENGINE_THREADS" def:"0" doc:"CPU threads for inference (0-512); 0 = all cores."`
	NGPULayers          int            `env:"N_GPU_LAYERS" def:"-1" doc:"Layers offloaded to the GPU when a GPU backend is loaded; -1 = all."`
	GGMLBackendDir      string         `env:"GGML_BACKEND_DIR" def:"" doc:"Directory holding loadable ggml backends (e.g. libggml-cuda.so); empty = CPU only."`
	CompactAfter        int            `env:"ENGINE_COMPACT_AFTER_SECONDS" def:"10" doc:"A request whose slot sits above a slot idle this long runs in that slot instead, the two caches swapped (none lost), so the slots in use stay next to each other and CPU steps carry no placeholder rows for idle slots between them (docs/architecture.md); 0 disables."`
	PromptCacheMiB      int            `env:"ENGINE_PROMPT_CACHE_MIB" def:"2048" doc:"MiB of host memory per model for prompts whose slot another user's request took: their KV cells are copied there and back when that user's next request comes, so it evaluates only what changed instead of its whole prompt (llama.cpp's --cache-ram); least recently saved dropped first; 0 disables (0-1048576)."`
	QueueLength         int            `env:"ENGINE_QUEUE" def:"64" doc:"Requests waiting per model before 429 overload."`
	PromptBudget        int            `env:"ENGINE_PROMPT_BUDGET_MS" def:"10000" doc:"Prompt time budget, in ms, of requests that set none (llama.cpp's t_max_prompt_ms sets one): when a model estimates from its measured prefill speed that a prompt would take longer, it drops extra context chunks and then prefix lines until it fits (docs/context.md); 0 = none (0-600000)."`
	PromptBudgetByModel map[string]int `env:"MODEL_PROMPT_BUDGET_MS" def:"{}" doc:"JSON object: model name to its own prompt time budget in ms, in place of ENGINE_PROMPT_BUDGET_MS (0-600000; 0 = none), e.g. {\"qwen2.5-coder-7b-q4_k_m\": 2000}."`
	ModelMmap           bool           `env:"MODEL_MMAP" def:"false" doc:"Map model files instead of reading them into memory. Reading is the default: on CPU, batched decoding of 8 sequences ran 1.6x faster from read-in weights than from mapped ones (docs/benchmarks.md); mapping starts faster and shares the page cache."`
	CompletionMaxTokens int            `env:"COMPLETION_MAX_TOKENS" def:"64" doc:"Most tokens a code completion generates (1-4096)."`
	ChatMaxTokens       int            `env:"CHAT_MAX_TOKENS" def:"256" doc:"Most tokens a chat answer generates (1-32768)."`
	ModelWorkers        int            `env:"THREAD_POOL_MAX_WORKERS" def:"4" doc:"Models run in parallel for one multi-model request (1-32)."`

	// Token caps of each model's FIM prompt parts, before the slot's budget.
	PromptSplitByModel map[string]PromptSplit `env:"MODEL_PROMPT_SPLIT" def:"{}" doc:"JSON object: model name to token caps on the parts of its FIM prompts, {\"extra\": N, \"prefix\": N, \"suffix\": N} (each optional, 0-1048576; 0 or absent: no cap of its own), applied before the slot's token budget: extra context chunks are dropped oldest first, prefix lines (the cursor's block included) from the top, suffix lines from the end (docs/context.md), e.g. {\"qwen2.5-coder-7b-q4_k_m\": {\"extra\": 2048, \"prefix\": 1024, \"suffix\": 256}}. A model named here that is not loaded is logged as a warning."`

	// Project context and retrieval (docs/context.md)
	ContextMaxFiles     int    `env:"CONTEXT_MAX_FILES" def:"500" doc:"Most files a project's multi-file context holds (1-100000); an update that would make more is refused with 422 and changes nothing."`
	ContextMaxFileBytes int    `env:"CONTEXT_MAX_FILE_BYTES" def:"1048576" doc:"Largest file of a project's multi-file context, in bytes of its lines (1024 or more); an update that makes a larger one is refused with 413 and changes nothing."`
	ContextMaxBytes     int    `env:"CONTEXT_MAX_BYTES" def:"33554432" doc:"Most bytes a project's whole multi-file context holds (at least CONTEXT_MAX_FILE_BYTES); an update that would make more is refused with 413 and changes nothing."`
	EmbeddingModel      string `env:"EMBEDDING_MODEL" def:"" doc:"Model whose mean-pooled embeddings index the project context for retrieval: loaded in process, or with serve --engine=remote served by a worker (embedded there; retrieval turns on once a worker serving it answers). Empty: the first completion model that embeds (one box: of those loaded; an API node: of those live workers serve). Set it when several API nodes share a database, so that all embed with the same model."`
	RetrievalTopK       int    `env:"RETRIEVAL_TOP_K" def:"8" doc:"Chunks of the project context retrieved per completion, nearest to the lines before the cursor (0-64); 0 turns retrieval off, and the named context files are laid out whole."`
	RetrievalQueryLines int    `env:"RETRIEVAL_QUERY_LINES" def:"16" doc:"Complete lines before the cursor line whose embedding is the retrieval query (1-256)."`
	RetrievalBytes      int    `env:"RETRIEVAL_CONTEXT_BYTES" def:"8192" doc:"Bytes of retrieved chunks a session's prompts carry (1024-1048576): chunks stay in the order they were first laid out, new ones are appended, and the oldest go when the total is over this. The engine drops the oldest further when a model's context has no room for them beside the prefix and suffix."`

	// Evaluation
	EvalRoot string `env:"EVAL_ROOT" def:"" doc:"Directory holding the source trees that evaluation runs started from the admin API (POST /api/eval/runs) may read; a repo outside it (symbolic links resolved) is refused. Empty: DATA_DIR/eval."`
}

// PromptSplit is one model's entry of MODEL_PROMPT_SPLIT: the most tokens
// of extra context, prefix and suffix its FIM prompts carry; 0: no cap of
// its own.
type PromptSplit struct {
	Extra  int `json:"extra"`
	Prefix int `json:"prefix"`
	Suffix int `json:"suffix"`
}

// maxPromptSplit is the largest cap MODEL_PROMPT_SPLIT accepts, 2^20
// tokens: far above a slot's context, so that a larger number is refused as
// the mistake it is.
const maxPromptSplit = 1 << 20

// Lookup returns the value of an environment variable and whether it is set;
// os.LookupEnv has this shape.
type Lookup func(key string) (string, bool)

// Load builds a Config from defaults overridden by lookup, then validates it.
func Load(lookup Lookup) (Config, error) {
	var c Config
	v := reflect.ValueOf(&c).Elem()
	t := v.Type()
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		name := f.Tag.Get("env")
		raw, ok := lookup(name)
		if !ok {
			raw = f.Tag.Get("def")
		}
		if err := setField(v.Field(i), f, strings.TrimSpace(raw)); err != nil {
			return Config{}, fmt.Errorf("config: %s: %w", name, err)
		}
	}
	if err := c.Validate(); err != nil {
		return Config{}, err
	}
	return c, nil
}

func setField(fv reflect.Value, f reflect.StructField, raw string) error {
	switch fv.Interface().(type) {
	case string:
		fv.SetString(raw)
	case int, int64:
		n, err := strconv.ParseInt(raw, 10, 64)
		if err != nil {
			return fmt.Errorf("%q is not an integer", raw)
		}
		fv.SetInt(n)
	case bool:
		b, err := strconv.ParseBool(raw)
		if err != nil {
			return fmt.Errorf("%q is not a boolean (true or false)", raw)
		}
		fv.SetBool(b)
	case time.Duration:
		n, err := strconv.ParseInt(raw, 10, 64)
		if err != nil || n <= 0 {
			return fmt.Errorf("%q is not a positive number of seconds", raw)
		}
		fv.Set(reflect.ValueOf(time.Duration(n) * time.Second))
	case []string:
		var out []string
		for _, p := range strings.Split(raw, ",") {
			if p = strings.TrimSpace(p); p != "" {
				out = append(out, p)
			}
		}
		fv.Set(reflect.ValueOf(out))
	case map[string]int:
		m := map[string]int{}
		if raw != "" {
			if err := json.Unmarshal([]byte(raw), &m); err != nil {
				return fmt.Errorf("not a JSON object of route to integer: %v", err)
			}
		}
		fv.Set(reflect.ValueOf(m))
	case map[string]PromptSplit:
		m := map[string]PromptSplit{}
		if raw != "" {
			dec := json.NewDecoder(strings.NewReader(raw))
			dec.DisallowUnknownFields()
			err := dec.Decode(&m)
			if _, end := dec.Token(); err == nil && end != io.EOF {
				err = errors.New("data after the object")
			}
			if err != nil {
				return fmt.Errorf(`not a JSON object of model name to {"extra": N, "prefix": N, "suffix": N}: %v`, err)
			}
		}
		fv.Set(reflect.ValueOf(m))
	default:
		return fmt.Errorf("unsupported field type %s", f.Type)
	}
	return nil
}

// FieldError is a validation failure of one variable.
type FieldError struct {
	Var string
	Msg string
}

func (e *FieldError) Error() string { return "config: " + e.Var + ": " + e.Msg }

// Validate checks ranges and formats and names the first offending variable.
func (c Config) Validate() error {
	bad := func(v, format string, a ...any) error { return &FieldError{Var: v, Msg: fmt.Sprintf(format, a...)} }
	if c.ServerPort < 1 || c.ServerPort > 65535 {
		return bad("SERVER_PORT", "%d is not a port number (1-65535)", c.ServerPort)
	}
	if c.ServerHost != "" && net.ParseIP(c.ServerHost) == nil && c.ServerHost != "localhost" {
		return bad("SERVER_HOST", "%q is not an IP address", c.ServerHost)
	}
	if c.DataDir == "" {
		return bad("DATA_DIR", "must not be empty")
	}
	switch c.LogLevel {
	case "debug", "info", "warn", "error":
	default:
		return bad("LOG_LEVEL", "%q is not one of debug, info, warn, error", c.LogLevel)
	}
	switch c.LogFormat {
	case "text", "json":
	default:
		return bad("LOG_FORMAT", "%q is not text or json", c.LogFormat)
	}
	if c.MaxBodyBytes < 1024 {
		return bad("MAX_BODY_BYTES", "%d is too small (at least 1024)", c.MaxBodyBytes)
	}
	if c.MaxHeaderBytes < 16384 || c.MaxHeaderBytes > 1<<20 {
		return bad("MAX_HEADER_BYTES", "%d is out of range 16384-1048576", c.MaxHeaderBytes)
	}
	if c.WSMaxInFlight < 1 || c.WSMaxInFlight > 64 {
		return bad("WS_MAX_IN_FLIGHT", "%d is out of range 1-64", c.WSMaxInFlight)
	}
	if c.DatabaseURL != "" {
		u, err := url.Parse(c.DatabaseURL)
		if err != nil || (u.Scheme != "postgres" && u.Scheme != "postgresql") {
			return bad("DATABASE_URL", "not a postgres:// URL")
		}
	}
	if c.DBPort < 1 || c.DBPort > 65535 {
		return bad("DB_PORT", "%d is not a port number (1-65535)", c.DBPort)
	}
	if c.DBPoolSize < 1 {
		return bad("DB_POOL_SIZE", "must be at least 1")
	}
	if c.RedisURL != "" {
		u, err := url.Parse(c.RedisURL)
		if err != nil || (u.Scheme != "redis" && u.Scheme != "rediss" && u.Scheme != "unix") {
			return bad("REDIS_URL", "not a redis:// URL")
		}
	}
	if c.RedisPort < 1 || c.RedisPort > 65535 {
		return bad("REDIS_PORT", "%d is not a port number (1-65535)", c.RedisPort)
	}
	if c.TokenHookActivation >= c.SessionTokenTTL || c.TokenHookActivation >= c.AuthTokenTTL {
		return bad("TOKEN_HOOK_ACTIVATION_IN_SECONDS", "must be shorter than the auth and session token lifetimes")
	}
	if c.RetentionInterval < time.Second {
		return bad("RETENTION_INTERVAL", "must be at least 1 second")
	}
	if c.MetricsToken != "" && len(c.MetricsToken) < 16 {
		return bad("METRICS_TOKEN", "must be at least 16 characters (a token that can be guessed would open the metrics)")
	}
	if c.DefaultRatePerHour < 1 {
		return bad("DEFAULT_MAX_REQUEST_RATE_PER_HOUR", "must be at least 1")
	}
	for route, n := range c.RatePerHourByRoute {
		if !strings.HasPrefix(route, "/") || n < 1 {
			return bad("MAX_REQUEST_RATE_PER_HOUR_CONFIG", "entry %q: %d must be a route starting with / and a limit of at least 1", route, n)
		}
	}
	if c.ExportSyncMaxQueries < 0 {
		return bad("EXPORT_SYNC_MAX_QUERIES", "%d is negative", c.ExportSyncMaxQueries)
	}
	if c.EmailPort < 1 || c.EmailPort > 65535 {
		return bad("EMAIL_PORT", "%d is not a port number (1-65535)", c.EmailPort)
	}
	for _, p := range []struct{ v, s string }{{"VERIFICATION_URL", c.VerificationURL}, {"RESET_PASSWORD_URL", c.ResetURL}} {
		if u, err := url.Parse(p.s); err != nil || u.Scheme == "" || u.Host == "" {
			return bad(p.v, "%q is not an absolute URL", p.s)
		}
	}
	for _, o := range c.CORSOrigins {
		if o == "*" {
			continue
		}
		if u, err := url.Parse(o); err != nil || u.Scheme == "" || u.Host == "" || (u.Path != "" && u.Path != "/") {
			return bad("CORS_ALLOWED_ORIGINS", "%q is not an origin like https://example.org", o)
		}
	}
	for _, p := range c.TrustedProxies {
		if net.ParseIP(p) == nil {
			if _, _, err := net.ParseCIDR(p); err != nil {
				return bad("TRUSTED_PROXIES", "%q is not an IP or CIDR", p)
			}
		}
	}
	if c.LlamaListen != "" {
		host, port, err := net.SplitHostPort(c.LlamaListen)
		n, perr := strconv.Atoi(port)
		if err != nil || perr != nil || n < 1 || n > 65535 || (host != "" && host != "localhost" && net.ParseIP(host) == nil) {
			return bad("LLAMA_LISTEN", "%q is not an IP address and port such as 127.0.0.1:8012", c.LlamaListen)
		}
	}
	if a, err := mail.ParseAddress(c.OpenUser); err != nil || a.Address != c.OpenUser || !strings.Contains(c.OpenUser[strings.LastIndex(c.OpenUser, "@")+1:], ".") {
		return bad("OPEN_USER", "%q is not an email address with a domain such as local@code4me.localhost", c.OpenUser)
	}
	if c.NParallel < 1 || c.NParallel > 64 {
		return bad("ENGINE_PARALLEL", "%d is out of range 1-64", c.NParallel)
	}
	if c.NCtx < 256 {
		return bad("ENGINE_CTX", "%d is too small (at least 256)", c.NCtx)
	}
	if c.NBatch < 16 {
		return bad("ENGINE_BATCH", "%d is too small (at least 16)", c.NBatch)
	}
	if c.NThreads < 0 || c.NThreads > 512 { // 512: ggml's GGML_MAX_N_THREADS
		return bad("ENGINE_THREADS", "%d is out of range 0-512", c.NThreads)
	}
	if c.QueueLength < 1 {
		return bad("ENGINE_QUEUE", "must be at least 1")
	}
	if c.CompletionMaxTokens < 1 || c.CompletionMaxTokens > 4096 {
		return bad("COMPLETION_MAX_TOKENS", "%d is out of range 1-4096", c.CompletionMaxTokens)
	}
	if c.ChatMaxTokens < 1 || c.ChatMaxTokens > 32768 {
		return bad("CHAT_MAX_TOKENS", "%d is out of range 1-32768", c.ChatMaxTokens)
	}
	if c.CompactAfter < 0 {
		return bad("ENGINE_COMPACT_AFTER_SECONDS", "%d is negative (0 disables)", c.CompactAfter)
	}
	if c.ModelWorkers < 1 || c.ModelWorkers > 32 {
		return bad("THREAD_POOL_MAX_WORKERS", "%d is out of range 1-32", c.ModelWorkers)
	}
	if c.PromptCacheMiB < 0 || c.PromptCacheMiB > 1<<20 {
		return bad("ENGINE_PROMPT_CACHE_MIB", "%d is out of range 0-1048576", c.PromptCacheMiB)
	}
	if c.MixedPrefill < 0 || c.MixedPrefill > 65536 {
		return bad("ENGINE_MIXED_PREFILL", "%d is out of range 0-65536", c.MixedPrefill)
	}
	if c.PromptBudget < 0 || c.PromptBudget > 600000 {
		return bad("ENGINE_PROMPT_BUDGET_MS", "%d is out of range 0-600000", c.PromptBudget)
	}
	for model, ms := range c.PromptBudgetByModel {
		if model == "" || ms < 0 || ms > 600000 {
			return bad("MODEL_PROMPT_BUDGET_MS", "entry %q: %d must name a model and be in range 0-600000", model, ms)
		}
	}
	for _, model := range slices.Sorted(maps.Keys(c.PromptSplitByModel)) {
		s := c.PromptSplitByModel[model]
		if model == "" {
			return bad("MODEL_PROMPT_SPLIT", "an entry has no model name")
		}
		for _, part := range []struct {
			name string
			n    int
		}{{"extra", s.Extra}, {"prefix", s.Prefix}, {"suffix", s.Suffix}} {
			if part.n < 0 || part.n > maxPromptSplit {
				return bad("MODEL_PROMPT_SPLIT", "entry %q: %s %d is out of range 0-%d tokens", model, part.name, part.n, maxPromptSplit)
			}
		}
	}
	if c.ContextMaxFiles < 1 || c.ContextMaxFiles > 100000 {
		return bad("CONTEXT_MAX_FILES", "%d is out of range 1-100000", c.ContextMaxFiles)
	}
	if c.ContextMaxFileBytes < 1024 {
		return bad("CONTEXT_MAX_FILE_BYTES", "%d is too small (at least 1024)", c.ContextMaxFileBytes)
	}
	if c.ContextMaxBytes < c.ContextMaxFileBytes {
		return bad("CONTEXT_MAX_BYTES", "%d is less than CONTEXT_MAX_FILE_BYTES (%d)", c.ContextMaxBytes, c.ContextMaxFileBytes)
	}
	if c.RetrievalTopK < 0 || c.RetrievalTopK > 64 {
		return bad("RETRIEVAL_TOP_K", "%d is out of range 0-64", c.RetrievalTopK)
	}
	if c.RetrievalQueryLines < 1 || c.RetrievalQueryLines > 256 {
		return bad("RETRIEVAL_QUERY_LINES", "%d is out of range 1-256", c.RetrievalQueryLines)
	}
	if c.RetrievalBytes < 1024 || c.RetrievalBytes > 1<<20 {
		return bad("RETRIEVAL_CONTEXT_BYTES", "%d is out of range 1024-1048576", c.RetrievalBytes)
	}
	return nil
}

// ManagedPostgres reports whether serve must start a private Postgres.
func (c Config) ManagedPostgres() bool { return c.DatabaseURL == "" && c.DBHost == "" }

// ManagedRedis reports whether serve must start a private Redis.
func (c Config) ManagedRedis() bool { return c.RedisURL == "" && c.RedisHost == "" }

// PostgresURL is the configured database URL (DATABASE_URL or one built
// from DB_*). Empty when the database is managed.
func (c Config) PostgresURL() string {
	if c.DatabaseURL != "" {
		return c.DatabaseURL
	}
	if c.DBHost == "" {
		return ""
	}
	u := url.URL{Scheme: "postgres", Host: net.JoinHostPort(c.DBHost, strconv.Itoa(c.DBPort)), Path: "/" + c.DBName}
	if c.DBPassword != "" {
		u.User = url.UserPassword(c.DBUser, c.DBPassword)
	} else {
		u.User = url.User(c.DBUser)
	}
	return u.String()
}

// RedisAddrURL is the configured Redis URL (REDIS_URL or one built from
// REDIS_*). Empty when Redis is managed.
func (c Config) RedisAddrURL() string {
	if c.RedisURL != "" {
		return c.RedisURL
	}
	if c.RedisHost == "" {
		return ""
	}
	return "redis://" + net.JoinHostPort(c.RedisHost, strconv.Itoa(c.RedisPort)) + "/0"
}

// ModelDirectory is MODEL_DIR or DATA_DIR/models.
func (c Config) ModelDirectory() string {
	if c.ModelDir != "" {
		return c.ModelDir
	}
	return filepath.Join(c.DataDir, "models")
}

// ListenAddr is host:port for the HTTP listener.
func (c Config) ListenAddr() string {
	return net.JoinHostPort(c.ServerHost, strconv.Itoa(c.ServerPort))
}

// CheckDataDir creates DATA_DIR if needed and verifies it is writable.
func (c Config) CheckDataDir() error {
	if err := os.MkdirAll(c.DataDir, 0o755); err != nil {
		return &FieldError{Var: "DATA_DIR", Msg: fmt.Sprintf("cannot create %s: %v", c.DataDir, unwrapPathErr(err))}
	}
	f, err := os.CreateTemp(c.DataDir, ".write-check-*")
	if err != nil {
		return &FieldError{Var: "DATA_DIR", Msg: fmt.Sprintf("%s is not writable: %v (choose another DATA_DIR or fix its permissions)", c.DataDir, unwrapPathErr(err))}
	}
	name := f.Name()
	f.Close()
	return os.Remove(name)
}

func unwrapPathErr(err error) error {
	if pe, ok := err.(*os.PathError); ok {
		return pe.Err
	}
	return err
}

// Var describes one configuration variable, for documentation.
type Var struct {
	Name, Default, Doc string
	Secret             bool
}

// Vars lists every variable in declaration order.
func Vars() []Var {
	t := reflect.TypeOf(Config{})
	out := make([]Var, 0, t.NumField())
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		out = append(out, Var{Name: f.Tag.Get("env"), Default: f.Tag.Get("def"), Doc: f.Tag.Get("doc"), Secret: f.Tag.Get("secret") == "true"})
	}
	return out
}
