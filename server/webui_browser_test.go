package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/emulation"
	cdplog "github.com/chromedp/cdproto/log"
	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"
	"github.com/google/uuid"

	"github.com/code4me/code4me/internal/config"
	"github.com/code4me/code4me/internal/mail"
	"github.com/code4me/code4me/internal/testenv"
)

// The dashboard in a real browser (Chromium, headless) against a real
// server on real Postgres and Redis. Set CODE4ME_SCREENSHOTS to a
// directory (relative to the repository root, e.g. docs/images) to save
// screenshots of the main pages.

// chromium returns the browser's path, or skips the test when there is none.
func chromium(t *testing.T) string {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	t.Skip("no Chromium on PATH (apt-get install chromium, or scripts/install-deps.sh): the dashboard's browser tests are skipped")
	return ""
}

// fileMail writes mail as files under DATA_DIR/mail, as a server without
// EMAIL_HOST does, and reports each file's path.
type fileMail struct {
	dir  *mail.Dir
	sent chan string
}

func (m *fileMail) Send(ctx context.Context, msg mail.Message) error {
	path, err := m.dir.Write(ctx, msg)
	if err == nil {
		m.sent <- path
	}
	return err
}

// browserEnv is a server listening on a loopback port, with mail written
// to files, and a headless browser.
type browserEnv struct {
	*env
	base string
	mail *fileMail
	ctx  context.Context // the browser tab
	shot string          // screenshot directory, "" for none

	mu       sync.Mutex
	problems []string // script exceptions and Content-Security-Policy violations
}

func newBrowserEnv(t *testing.T) *browserEnv {
	t.Helper()
	chrome := chromium(t)
	if _, index := webUIBuild(); !strings.Contains(string(index), `id="root"`) {
		t.Fatal("the dashboard is not built: run make web (make test does)")
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	base := "http://" + ln.Addr().String()
	cfg, err := config.Load(func(string) (string, bool) { return "", false })
	if err != nil {
		t.Fatal(err)
	}
	cfg.DataDir = t.TempDir()
	cfg.EvalRoot = t.TempDir() // "proj": the eval job tests' tree, for an evaluation run
	for p, text := range evalJobTree {
		full := filepath.Join(cfg.EvalRoot, "proj", filepath.FromSlash(p))
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(full, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	cfg.EmailHost = ""
	cfg.VerificationURL = base + "/api/user/verify/"
	fm := &fileMail{dir: &mail.Dir{Path: filepath.Join(cfg.DataDir, "mail"), From: cfg.EmailFrom, Logger: slog.New(slog.DiscardHandler)},
		sent: make(chan string, 16)}
	eng, _ := sharedEngine(t) // the tiny models, for the models page
	srv, err := New(Deps{Config: cfg, DB: testenv.Pool(t), Redis: testenv.Redis(t), Mail: fm, Engine: eng, JobQueue: testQueue()})
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		srv.Shutdown(ctx)
		if err := <-served; err != nil && !errors.Is(err, net.ErrClosed) {
			t.Logf("serve: %v", err)
		}
	})

	alloc, cancelAlloc := chromedp.NewExecAllocator(context.Background(),
		chromedp.ExecPath(chrome), chromedp.Headless, chromedp.NoSandbox, chromedp.DisableGPU,
		chromedp.NoFirstRun, chromedp.NoDefaultBrowserCheck, chromedp.WindowSize(1280, 860),
		chromedp.Flag("disable-dev-shm-usage", true), chromedp.Flag("hide-scrollbars", true),
		chromedp.UserDataDir(t.TempDir()))
	ctx, cancelTab := chromedp.NewContext(alloc)
	ctx, cancelTime := context.WithTimeout(ctx, 4*time.Minute)
	t.Cleanup(func() { cancelTime(); cancelTab(); cancelAlloc() })

	b := &browserEnv{env: &env{t: t, srv: srv}, base: base, mail: fm, ctx: ctx}
	if d := os.Getenv("CODE4ME_SCREENSHOTS"); d != "" {
		if !filepath.IsAbs(d) {
			d = filepath.Join("..", d) // tests run in server/
		}
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
		b.shot = d
	}
	err = chromedp.Listen(ctx, func(ev any) {
		switch ev := ev.(type) {
		case *runtime.EventExceptionThrown:
			msg := ev.ExceptionDetails.Text
			if ex := ev.ExceptionDetails.Exception; ex != nil {
				msg += " " + ex.Description
			}
			b.problem("exception: " + msg)
		case *cdplog.EventEntryAdded:
			if ev.Entry.Source == cdplog.EntrySourceSecurity || strings.Contains(ev.Entry.Text, "Content Security Policy") {
				b.problem("security: " + ev.Entry.Text)
			}
		}
	})
	if err != nil {
		t.Fatalf("start Chromium: %v", err)
	}
	t.Cleanup(func() {
		b.mu.Lock()
		defer b.mu.Unlock()
		for _, p := range b.problems {
			t.Errorf("in the page: %s", p)
		}
	})
	return b
}

func (b *browserEnv) problem(s string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.problems = append(b.problems, s)
}

// stepTimeout bounds each step, so that a page that never shows what a
// step waits for fails the test in seconds rather than at its deadline.
const stepTimeout = 45 * time.Second

// run runs browser actions, failing the test with what was being done.
func (b *browserEnv) run(what string, actions ...chromedp.Action[chromedp.Void]) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, stepTimeout)
	defer cancel()
	if err := chromedp.Do(ctx, actions...); err != nil {
		b.fail(what, err)
	}
}

func (b *browserEnv) fail(what string, err error) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 5*time.Second)
	defer cancel()
	loc, _ := chromedp.Run(ctx, chromedp.Location())
	b.t.Fatalf("%s (at %s): %v", what, loc, err)
}

// pageEval evaluates expr in the page (awaiting a promise) into a T.
func pageEval[T any](b *browserEnv, expr string) T {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, stepTimeout)
	defer cancel()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[T](expr, chromedp.EvalAwaitPromise))
	if err != nil {
		b.fail("evaluate "+expr, err)
	}
	return v
}

// css is a CSS selector.
func css(sel string) chromedp.CSS { return chromedp.CSS(sel) }

// text reads the text of the first element matching sel.
func (b *browserEnv) text(sel string) string {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, stepTimeout)
	defer cancel()
	s, err := chromedp.Run(ctx, chromedp.Text(css(sel)))
	if err != nil {
		b.fail("read "+sel, err)
	}
	return strings.TrimSpace(s)
}

// fetchStatus makes a same-origin request from the page, with its
// cookies, and returns the status.
func (b *browserEnv) fetchStatus(method, path string) int {
	b.t.Helper()
	return pageEval[int](b, fmt.Sprintf(`fetch(%q, {method: %q, credentials: "same-origin"}).then(r => r.status)`, path, method))
}

// screenshot saves the page as NAME.png when screenshots are asked for.
func (b *browserEnv) screenshot(name string) {
	b.t.Helper()
	if b.shot == "" {
		return
	}
	// Let uPlot's resize observer and the fonts settle into the frame.
	pageEval[bool](b, `new Promise(r => requestAnimationFrame(() => requestAnimationFrame(() => r(true))))`)
	png, err := chromedp.Run(b.ctx, chromedp.FullScreenshot(100))
	if err != nil {
		b.fail("screenshot "+name, err)
	}
	if err := os.WriteFile(filepath.Join(b.shot, name+".png"), png, 0o644); err != nil {
		b.t.Fatal(err)
	}
}

// fitsWidth checks that the page scrolls only vertically in the test's
// 1280 px window.
func (b *browserEnv) fitsWidth(page string) {
	b.t.Helper()
	if w := pageEval[int](b, `document.documentElement.scrollWidth - window.innerWidth`); w > 0 {
		b.t.Errorf("%s is %d px wider than the 1280 px window", page, w)
	}
}

// prefersColorScheme makes the page's system theme scheme.
func (b *browserEnv) prefersColorScheme(scheme string) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, stepTimeout)
	defer cancel()
	if _, err := chromedp.Call(ctx, emulation.SetEmulatedMedia, emulation.SetEmulatedMediaParams{
		Features: []*emulation.MediaFeature{{Name: "prefers-color-scheme", Value: scheme}}}); err != nil {
		b.fail("emulate prefers-color-scheme "+scheme, err)
	}
}

// tableRows reads the cells of sel's body rows.
func (b *browserEnv) tableRows(sel string) [][]string {
	b.t.Helper()
	b.run("wait for table "+sel, chromedp.WaitVisible(css(sel+" tbody tr")))
	return pageEval[[][]string](b, fmt.Sprintf(
		`[...document.querySelectorAll(%q)].map(tr => [...tr.children].map(c => c.textContent.trim()))`, sel+" tbody tr"))
}

// signIn signs in through the sign-in page and waits for the usage page.
func (b *browserEnv) signIn(email string) {
	b.t.Helper()
	b.run("sign in",
		chromedp.Navigate(b.base+"/app/signin"),
		chromedp.WaitVisible(css(`form[aria-label="Sign in"]`)),
		chromedp.SendKeys(css(`input[name="email"]`), email),
		chromedp.SendKeys(css(`input[name="password"]`), testPassword),
		chromedp.Click(css(`form[aria-label="Sign in"] button[type="submit"]`)),
		chromedp.WaitVisible(css(`[data-chart="usage-daily"]`)),
	)
}

// seedUsageHistory gives user two more weeks of completions, on the 14
// UTC days before seedUsage's first: day k (1 to 14) has 4 + 5k mod 7
// queries of one generation each, all but k mod 3 of them shown, half of
// those plus k mod 2 accepted, served in 80, 90, 100, ... ms, in
// TypeScript, Java or Go by k mod 3. It returns the days as GET
// /api/user/usage must answer them, oldest first, and adds each day's
// completions, shown and accepted to its language in langs.
func seedUsageHistory(e *env, user uuid.UUID, langs map[string][3]int64) []usageDay {
	e.t.Helper()
	ctx := context.Background()
	var model int64
	if err := e.srv.db.QueryRow(ctx, "INSERT INTO model (name, family, file_sha256) VALUES ($1, 'test', $2) RETURNING model_id",
		"usage-model-"+uuid.NewString()[:8], strings.ReplaceAll(uuid.NewString()+uuid.NewString(), "-", "")[:64]).Scan(&model); err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() {
		_, _ = e.srv.db.Exec(context.Background(), "DELETE FROM meta_query WHERE user_id = $1", user)
		_, _ = e.srv.db.Exec(context.Background(), "DELETE FROM model WHERE model_id = $1", model)
	})
	first := time.Now().UTC().Truncate(24*time.Hour).AddDate(0, 0, -16)
	var days []usageDay
	for k := 1; k <= 14; k++ {
		day := first.AddDate(0, 0, k-1)
		n := 4 + (5*k)%7
		shown := n - k%3
		accepted := shown/2 + k%2
		lang := []string{"TypeScript", "Java", "Go"}[k%3]
		l := langs[lang]
		langs[lang] = [3]int64{l[0] + int64(n), l[1] + int64(shown), l[2] + int64(accepted)}
		for i := range n {
			at := day.Add(9*time.Hour + time.Duration(i)*7*time.Minute)
			var mq uuid.UUID
			if err := e.srv.db.QueryRow(ctx, `INSERT INTO meta_query (query_type, user_id, config_id, server_version, requested_at, total_serving_ms)
				VALUES ('completion', $1, 1, 'test', $2, $3) RETURNING meta_query_id`, user, at, float64(80+10*i)).Scan(&mq); err != nil {
				e.t.Fatal(err)
			}
			e.exec(`INSERT INTO contextual_telemetry (meta_query_id, version_id, trigger_type_id, language_id)
				SELECT $1, 1, 2, language_id FROM programming_language WHERE language_name = $2`, mq, lang)
			shownAt := []time.Time{}
			if i < shown {
				shownAt = append(shownAt, at.Add(time.Second))
			}
			e.exec(`INSERT INTO generation (meta_query_id, model_id, completion, generation_time_ms, shown_at, was_accepted)
				VALUES ($1, $2, 'x', 10, $3, $4)`, mq, model, shownAt, i < accepted)
		}
		// Nearest rank: the ceil(p·n)-th of the sorted times.
		rank := func(p float64) float64 { return float64(80 + 10*(int(math.Ceil(p*float64(n)))-1)) }
		days = append(days, usageDay{day: day, completions: int64(n), shown: int64(shown), accepted: int64(accepted),
			p50: rank(0.5), p95: rank(0.95)})
	}
	return days
}

// seedStudyArms gives each named arm of the study 60 completion queries
// of user, made a millisecond apart from the study's start, each with one
// shown generation, the first accepted[arm] of them accepted, served in
// 90 to 150 ms under control and 15 ms faster under the other arms.
func seedStudyArms(e *env, user uuid.UUID, study string, accepted map[string]int) {
	e.t.Helper()
	ctx := context.Background()
	var model int64
	if err := e.srv.db.QueryRow(ctx, "INSERT INTO model (name, family, file_sha256) VALUES ($1, 'test', $2) RETURNING model_id",
		"study-model-"+uuid.NewString()[:8], strings.ReplaceAll(uuid.NewString()+uuid.NewString(), "-", "")[:64]).Scan(&model); err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() {
		_, _ = e.srv.db.Exec(context.Background(), "DELETE FROM meta_query WHERE user_id = $1", user)
		_, _ = e.srv.db.Exec(context.Background(), "DELETE FROM model WHERE model_id = $1", model)
	})
	for arm, n := range accepted {
		base := 90.0
		if arm != "control" {
			base = 75
		}
		for i := range 60 {
			var mq uuid.UUID
			var at time.Time
			if err := e.srv.db.QueryRow(ctx, `INSERT INTO meta_query (query_type, user_id, config_id, server_version, requested_at,
					total_serving_ms, study_id, arm_id)
				SELECT 'completion', $1, a.config_id, 'test', s.starts_at + make_interval(secs => $2::float8 / 1000), $3, s.study_id, a.arm_id
				FROM study s JOIN study_arm a USING (study_id) WHERE s.name = $4 AND a.name = $5
				RETURNING meta_query_id, requested_at`, user, i+1, base+float64(10*(i%7)), study, arm).Scan(&mq, &at); err != nil {
				e.t.Fatal(err)
			}
			e.exec(`INSERT INTO generation (meta_query_id, model_id, completion, generation_time_ms, shown_at, was_accepted)
				VALUES ($1, $2, 'x', 10, $3, $4)`, mq, model, []time.Time{at.Add(time.Second)}, i < n)
		}
	}
}

// fmtMs writes milliseconds as the dashboard does: rounded, with
// thousands separated by commas.
func fmtMs(ms float64) string {
	n := strconv.FormatInt(int64(math.Round(ms)), 10)
	for i := len(n) - 3; i > 0; i -= 3 {
		n = n[:i] + "," + n[i:]
	}
	return n + " ms"
}

var verifyLinkRe = regexp.MustCompile(`https?://[^\s"<>]+/api/user/verify/\?token=[0-9a-f-]{36}`)

// TestDashboardInBrowser walks the dashboard as a new user and then as an
// admin: sign-up, the verification link from the mail file, sign-in, the
// usage chart against the seeded numbers, an API key created and revoked,
// admin pages and routes refused to a non-admin, sign-out; then, as an
// admin, a study created and started, every page opened, the data
// exported and the account deleted. No page may throw or break its
// Content-Security-Policy.
func TestDashboardInBrowser(t *testing.T) {
	b := newBrowserEnv(t)
	email := "browser-" + uuid.NewString()[:8] + "@example.com"

	// Sign up: the page says a link was sent, and the mail file holds it.
	b.run("open the dashboard", chromedp.Navigate(b.base+"/"), chromedp.WaitVisible(css(`form[aria-label="Sign in"]`)))
	b.screenshot("signin")
	// Without a choice of the user's, the theme is the system's.
	b.prefersColorScheme("dark")
	b.run("reload in a dark system", chromedp.Reload(), chromedp.WaitVisible(css(`html[data-theme="dark"]`)))
	b.prefersColorScheme("light")
	b.run("follow the system back to light", chromedp.WaitVisible(css(`html[data-theme="light"]`)))
	b.run("sign up",
		chromedp.Click(css(`a[href="/app/signup"]`)),
		chromedp.WaitVisible(css(`form[aria-label="Sign up"]`)),
		chromedp.SendKeys(css(`input[name="name"]`), "Ada Lovelace"),
		chromedp.SendKeys(css(`input[name="email"]`), email),
		chromedp.SendKeys(css(`input[name="password"]`), testPassword),
		chromedp.Click(css(`form[aria-label="Sign up"] button[type="submit"]`)),
		chromedp.WaitVisible(css(`[data-state="signup-sent"]`)),
	)
	if got := b.text(`[data-state="signup-sent"]`); !strings.Contains(got, email) {
		t.Errorf("sign-up page says %q, want it to name %s", got, email)
	}
	var path string
	select {
	case path = <-b.mail.sent:
	case <-time.After(stepTimeout):
		t.Fatal("no verification mail was written")
	}
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	eml := strings.ReplaceAll(strings.ReplaceAll(string(raw), "=\r\n", ""), "=3D", "=") // quoted-printable soft breaks
	link := verifyLinkRe.FindString(eml)
	if link == "" || !strings.HasPrefix(link, b.base) {
		t.Fatalf("no verification link to %s in %s:\n%s", b.base, path, raw)
	}
	b.run("open the verification link", chromedp.Navigate(link), chromedp.WaitVisible(css(`h1`)))
	if got := b.text("h1"); !strings.Contains(got, "Verification Successful") {
		t.Fatalf("verification page: %q", got)
	}
	var uid uuid.UUID
	if err := b.srv.db.QueryRow(context.Background(), "SELECT user_id FROM users WHERE email = $1 AND verified", email).Scan(&uid); err != nil {
		t.Fatalf("the user is not verified: %v", err)
	}

	// Usage: the chart is drawn, and its table view shows the seeded days.
	want := seedUsage(b.env, uid)
	history := seedUsageHistory(b.env, uid, want.languages)
	want.days = append(history, want.days...)
	for _, d := range history {
		want.total[0] += d.completions
	}
	b.signIn(email)
	b.run("the usage chart is drawn", chromedp.WaitVisible(css(`[data-chart="usage-daily"] canvas`)))
	if got := b.text(`[data-stat="completions"] .stat-value`); got != fmt.Sprint(want.total[0]) {
		t.Errorf("completions stat = %q, want %d", got, want.total[0])
	}
	b.screenshot("usage")
	b.fitsWidth("usage")
	b.run("switch to the dark theme", chromedp.Click(css(`[data-action="theme"]`)), chromedp.WaitVisible(css(`html[data-theme="dark"]`)))
	b.run("the chart is redrawn", chromedp.WaitVisible(css(`[data-chart="usage-daily"] canvas`)))
	b.screenshot("usage-dark")
	b.run("switch back to the light theme", chromedp.Click(css(`[data-action="theme"]`)), chromedp.WaitVisible(css(`html[data-theme="light"]`)))
	b.run("show the table view", chromedp.Click(css(`[data-chart="usage-daily"] [data-action="table-view"]`)))
	rows := b.tableRows(`[data-chart="usage-daily"] table`)
	if len(rows) != len(want.days) {
		t.Fatalf("usage table has %d rows %v, want %d days", len(rows), rows, len(want.days))
	}
	for i, d := range want.days {
		w := []string{d.day.Format("2006-01-02"), fmt.Sprint(d.completions), fmt.Sprint(d.shown), fmt.Sprint(d.accepted)}
		if strings.Join(rows[i], "|") != strings.Join(w, "|") {
			t.Errorf("usage table row %d = %v, want %v (Day, Completions, Shown, Accepted)", i, rows[i], w)
		}
	}
	b.run("show the latency table", chromedp.Click(css(`[data-chart="usage-latency"] [data-action="table-view"]`)))
	lat := b.tableRows(`[data-chart="usage-latency"] table`)
	for i, d := range want.days {
		w := []string{d.day.Format("2006-01-02"), fmt.Sprintf("%.0f ms", d.p50), fmt.Sprintf("%.0f ms", d.p95)}
		if i >= len(lat) || strings.Join(lat[i], "|") != strings.Join(w, "|") {
			t.Errorf("latency table row %d = %v, want %v", i, lat, w)
		}
	}

	// Languages: most used first, with their acceptance (accepted/shown).
	langs := b.tableRows(`[data-chart="usage-languages"] table`)
	if len(langs) != len(want.languages) {
		t.Errorf("languages table = %v, want %d languages", langs, len(want.languages))
	}
	for i, row := range langs {
		w, ok := want.languages[row[0]]
		if !ok || len(row) < 3 || row[1] != fmt.Sprint(w[0]) || row[2] != fmt.Sprintf("%.1f %%", 100*float64(w[2])/float64(w[1])) {
			t.Errorf("languages row %v, want %s with completions, shown, accepted %v", row, row[0], w)
		}
		if i > 0 && want.languages[langs[i-1][0]][0] < w[0] {
			t.Errorf("languages %v: %s listed after one with fewer completions", langs, row[0])
		}
	}

	// API keys: created with a scope, shown once, working; revoked, refused.
	b.run("create an API key",
		chromedp.Click(css(`nav a[href="/app/api-keys"]`)),
		chromedp.WaitVisible(css(`form[aria-label="Create an API key"]`)),
		chromedp.SendKeys(css(`input[name="key-name"]`), "laptop"),
		chromedp.Click(css(`input[name="scope-account"]`)),
		chromedp.Click(css(`form[aria-label="Create an API key"] button[type="submit"]`)),
		chromedp.WaitVisible(css(`[data-secret="api-key"]`)),
		chromedp.WaitVisible(css(`tr[data-key="laptop"]`)),
	)
	key := b.text(`[data-secret="api-key"]`)
	bearer := b.client()
	bearer.header["Authorization"] = "Bearer " + key
	if r := bearer.do("GET", "/api/user/get", nil); r.status != http.StatusOK {
		t.Fatalf("the new key (account scope) on /api/user/get = %d %s", r.status, r.raw)
	}
	if got := b.text(`tr[data-key="laptop"]`); !strings.Contains(got, "account") || !strings.Contains(got, "completions") {
		t.Errorf("key row = %q, want both scopes", got)
	}
	b.screenshot("api-keys")
	b.fitsWidth("api-keys")
	b.run("revoke the key",
		chromedp.Click(css(`tr[data-key="laptop"] [data-action="revoke"]`)),
		chromedp.Click(css(`tr[data-key="laptop"] [data-action="confirm-revoke"]`)),
		chromedp.WaitNotPresent(css(`tr[data-key="laptop"]`)),
	)
	if r := bearer.do("GET", "/api/user/get", nil); r.status != http.StatusUnauthorized {
		t.Errorf("the revoked key on /api/user/get = %d, want 401", r.status)
	}

	// Not an admin: no admin links, the admin pages say so, the routes 403.
	if adminLinks := pageEval[int](b, `document.querySelectorAll('nav a[href^="/app/admin"]').length`); adminLinks != 0 {
		t.Errorf("a non-admin sees %d admin links", adminLinks)
	}
	for _, p := range []string{"/app/admin", "/app/admin/studies", "/app/admin/users"} {
		b.run("open "+p, chromedp.Navigate(b.base+p), chromedp.WaitVisible(css(`[data-state="admin-denied"]`)))
		if got := b.text(`[data-state="admin-denied"]`); !strings.Contains(got, "Admin privileges required") {
			t.Errorf("%s says %q", p, got)
		}
	}
	for _, p := range []string{"/api/admin/overview", "/api/admin/users", "/api/admin/workers", "/api/analytics/studies",
		"/api/analytics/usage", "/api/config/", "/api/eval/runs"} {
		if got := b.fetchStatus("GET", p); got != http.StatusForbidden {
			t.Errorf("a non-admin's GET %s from the page = %d, want 403", p, got)
		}
	}
	if got := b.fetchStatus("POST", "/api/analytics/studies"); got != http.StatusForbidden {
		t.Errorf("a non-admin's POST /api/analytics/studies from the page = %d, want 403", got)
	}

	// Sign out: back to the sign-in page, and the login is gone.
	b.run("sign out", chromedp.Click(css(`[data-action="sign-out"]`)), chromedp.WaitVisible(css(`form[aria-label="Sign in"]`)))
	if got := b.fetchStatus("GET", "/api/user/get"); got != http.StatusUnauthorized {
		t.Errorf("after sign-out GET /api/user/get = %d, want 401", got)
	}

	// As an admin: the overview, then a study created and started.
	b.exec("UPDATE users SET is_admin = true WHERE user_id = $1", uid)
	b.signIn(email)
	// The user's queries of the last day get their stages: redact 1 ms,
	// context 2, queue 3, prefill 4, decode 5.
	b.exec("UPDATE meta_query SET redact_ms = 1, context_ms = 2 WHERE user_id = $1 AND requested_at > now() - interval '1 day'", uid)
	b.exec(`UPDATE generation SET queue_ms = 3, prefill_ms = 4, decode_ms = 5 WHERE meta_query_id IN
		(SELECT meta_query_id FROM meta_query WHERE user_id = $1 AND requested_at > now() - interval '1 day')`, uid)
	b.run("open the admin overview", chromedp.Click(css(`nav a[href="/app/admin"]`)), chromedp.WaitVisible(css(`[data-window="24 hours"]`)))
	// Each model's stage chart; its table view has a bucket with the stages.
	b.run("the stage charts are drawn", chromedp.WaitVisible(css(`[data-chart="overview-stages-0"] canvas`)))
	pageEval[bool](b, `(document.querySelectorAll('[data-chart^="overview-stages-"] [data-action="table-view"]').forEach(b => b.click()), true)`)
	stageRows := b.tableRows(`[data-chart^="overview-stages-"] table`)
	wantStages := "1 ms|1 ms|2 ms|2 ms|3 ms|3 ms|4 ms|4 ms|5 ms|5 ms" // redact p50, p95, context ..., decode p95
	found := false
	for _, r := range stageRows {
		found = found || (len(r) == 11 && strings.Join(r[1:], "|") == wantStages)
	}
	if !found {
		t.Errorf("no stage table row reads %s: %v", wantStages, stageRows)
	}
	b.run("the overview over 30 days", chromedp.Click(css(`.page-head .seg button:nth-child(4)`)),
		chromedp.WaitVisible(css(`[data-window="30 days"]`)), chromedp.WaitVisible(css(`[data-chart="overview-latency"] canvas`)))
	b.screenshot("admin-overview")
	b.fitsWidth("admin-overview")
	study := "Shorter completions " + uuid.NewString()[:6]
	t.Cleanup(func() {
		_, _ = b.srv.db.Exec(context.Background(), "DELETE FROM study WHERE name = $1", study)
	})
	row := fmt.Sprintf(`tr[data-study=%q]`, study)
	b.run("create a study",
		chromedp.Click(css(`nav a[href="/app/admin/studies"]`)),
		chromedp.WaitVisible(css(`[data-action="new-study"]`)),
		chromedp.Click(css(`[data-action="new-study"]`)),
		chromedp.WaitVisible(css(`form[aria-label="Create a study"]`)),
		chromedp.SendKeys(css(`input[name="study-name"]`), study),
		chromedp.SendKeys(css(`textarea[name="description"]`), "Does a 32-token budget keep acceptance?"),
		chromedp.Click(css(`form[aria-label="Create a study"] button[type="submit"]`)),
		chromedp.WaitVisible(css(row)),
	)
	if got := b.text(row + " [data-status]"); got != "draft" {
		t.Fatalf("new study's status = %q, want draft", got)
	}
	b.run("start the study", chromedp.Click(css(row+` [data-action="start"]`)), chromedp.WaitVisible(css(row+` [data-action="pause"]`)))
	if got := b.text(row + " [data-status]"); got != "running" {
		t.Errorf("started study's status = %q, want running", got)
	}
	var status string
	if err := b.srv.db.QueryRow(context.Background(), "SELECT status FROM study WHERE name = $1", study).Scan(&status); err != nil || status != "running" {
		t.Errorf("study in Postgres: %q, %v; want running", status, err)
	}
	// Sixty shown completions per arm since the start: 21 accepted under
	// control, 29 under treatment.
	seedStudyArms(b.env, uid, study, map[string]int{"control": 21, "treatment": 29})
	b.run("open the results", chromedp.Click(css(row+` [data-action="results"]`)), chromedp.WaitVisible(css(`table[data-table="study-arms"]`)))
	arms := b.tableRows(`table[data-table="study-arms"]`)
	if len(arms) != 2 || !strings.HasPrefix(arms[0][0], "control") || !strings.Contains(arms[0][0], "baseline") || !strings.HasPrefix(arms[1][0], "treatment") {
		t.Fatalf("arms = %v, want control (baseline) and treatment", arms)
	}
	// Arm, units, queries, shown, accepted, acceptance [CI], (bar), vs baseline, ...
	for i, w := range []struct{ accepted, rate string }{{"21", "35.0% ["}, {"29", "48.3% ["}} {
		if a := arms[i]; a[2] != "60" || a[3] != "60" || a[4] != w.accepted || !strings.HasPrefix(a[5], w.rate) {
			t.Errorf("arm %d = %v, want 60 queries, 60 shown, %s accepted, acceptance %s...]", i, a, w.accepted, w.rate)
		}
	}
	if arms[0][7] != "–" || !strings.HasPrefix(arms[1][7], "+13.3pp [") {
		t.Errorf("vs baseline = %q, %q; want – and +13.3pp [low, high]", arms[0][7], arms[1][7])
	}
	b.screenshot("admin-studies")
	b.fitsWidth("admin-studies")
	b.run("pause the study", chromedp.Click(css(row+` [data-action="pause"]`)), chromedp.WaitVisible(css(row+` [data-action="start"]`)))
	if got := b.text(row + " [data-status]"); got != "paused" {
		t.Errorf("paused study's status = %q, want paused", got)
	}
	if err := b.srv.db.QueryRow(context.Background(), "SELECT status FROM study WHERE name = $1", study).Scan(&status); err != nil || status != "paused" {
		t.Errorf("study in Postgres: %q, %v; want paused", status, err)
	}
	// End it, so that other tests can run theirs.
	b.run("end the study", chromedp.Click(css(row+` [data-action="end"]`)), chromedp.WaitNotPresent(css(row+` [data-action="end"]`)))

	if n := pageEval[int](b, `document.querySelectorAll('nav a[href="/admin/jobs"]').length`); n != 1 {
		t.Errorf("admin sidebar has %d links to /admin/jobs, want 1", n)
	}

	// Calibration: the user's completions get confidence 0.95, so the
	// model of the seeded history has one bin, the top one, whose rate is
	// the model's accepted share of its shown completions.
	b.exec(`UPDATE generation SET confidence = 0.95 WHERE meta_query_id IN (SELECT meta_query_id FROM meta_query WHERE user_id = $1)`, uid)
	var calModel string
	var calRate float64
	if err := b.srv.db.QueryRow(context.Background(), `SELECT m.name, avg(g.was_accepted::int)::float8 FROM generation g
		JOIN meta_query mq USING (meta_query_id) JOIN model m USING (model_id)
		WHERE mq.user_id = $1 AND cardinality(g.shown_at) > 0 AND mq.requested_at < now() - interval '2 days'
		GROUP BY m.name ORDER BY count(*) DESC LIMIT 1`, uid).Scan(&calModel, &calRate); err != nil {
		t.Fatal(err)
	}

	// A worker of the worker tier, silent so no API node sends it work,
	// with the memory of the model it served, for the models page.
	workerHost := "browser-worker-" + uuid.NewString()[:6]
	workerID := uuid.New()
	b.exec("INSERT INTO engine_worker (worker_id, host, pid, heartbeat_at) VALUES ($1, $2, 7, now() - interval '10 minutes')",
		workerID, workerHost)
	t.Cleanup(func() { b.exec("DELETE FROM engine_worker WHERE worker_id = $1", workerID) })
	b.exec(`INSERT INTO engine_worker_model (worker_id, model_id, slots, weights_bytes, kv_cells)
		SELECT $1, model_id, 2, 3 * 1024 * 1024, 4096 FROM model WHERE name = 'tiny-coder'`, workerID)

	// Every other page loads its data without an error.
	for _, p := range []struct{ path, ready string }{
		{"/app/admin/users", `table[data-table="users"]`},
		{"/app/admin/models", `table[data-table="models"]`},
		{"/app/admin/calibration", `[data-chart="calibration"]`},
		{"/app/admin/evaluation", `form[aria-label="Start an evaluation run"]`},
		{"/app/admin/configs", `form[aria-label="Create a config"]`},
		{"/app/projects", `form[aria-label="Create a project"]`},
		{"/app/account", `[data-action="export"]`},
	} {
		b.run("open "+p.path, chromedp.Navigate(b.base+p.path), chromedp.WaitVisible(css(p.ready)))
		if n := pageEval[int](b, `document.querySelectorAll('[role="alert"]').length`); n != 0 {
			t.Errorf("%s shows an error: %q", p.path, b.text(`[role="alert"]`))
		}
		b.fitsWidth(p.path)
		if got := b.text(p.ready); p.path == "/app/admin/users" && !strings.Contains(got, email) {
			t.Errorf("admin users page does not list %s", email)
		}
		if p.path == "/app/projects" {
			proj := "browser-project-" + uuid.NewString()[:6]
			b.run("create a project",
				chromedp.SendKeys(css(`input[name="project-name"]`), proj),
				chromedp.Click(css(`form[aria-label="Create a project"] button[type="submit"]`)),
				chromedp.WaitVisible(css(`table[data-table="projects"]`)),
			)
			var n int
			if err := b.srv.db.QueryRow(context.Background(), `SELECT count(*) FROM project p JOIN project_users pu USING (project_id)
				WHERE p.project_name = $1 AND pu.user_id = $2`, proj, uid).Scan(&n); err != nil || n != 1 {
				t.Errorf("the project created on the page has %d rows of the user (%v)", n, err)
			}
			if got := b.text(`table[data-table="projects"] tbody`); !strings.Contains(got, proj) {
				t.Errorf("projects table %q does not list %s", got, proj)
			}
		}
		if p.path == "/app/admin/configs" {
			b.run("create a config", chromedp.Click(css(`form[aria-label="Create a config"] button[type="submit"]`)),
				chromedp.WaitVisible(css(`[role="status"]`)))
			var cfgID int64
			if err := b.srv.db.QueryRow(context.Background(), `SELECT resource_id::bigint FROM admin_audit WHERE actor_id = $1
				AND resource = 'configs' AND action = 'create' ORDER BY id DESC LIMIT 1`, uid).Scan(&cfgID); err != nil {
				t.Fatalf("the config created on the page has no audit row: %v", err)
			}
			if got := b.text(`[role="status"]`); got != fmt.Sprintf("Config %d created.", cfgID) {
				t.Errorf("configs page says %q, want Config %d created.", got, cfgID)
			}
			b.exec("DELETE FROM config WHERE config_id = $1", cfgID)
		}
		if p.path == "/app/admin/calibration" {
			b.run("show the calibration table", chromedp.Click(css(`[data-chart="calibration"] [data-action="table-view"]`)))
			rows := b.tableRows(`[data-chart="calibration"] table`)
			head := pageEval[[]string](b, `[...document.querySelectorAll('[data-chart="calibration"] thead th')].map(th => th.textContent.trim())`)
			col := slices.Index(head, calModel)
			want := fmt.Sprintf("%.1f %%", 100*calRate)
			if col < 0 || len(rows) != 10 || rows[9][0] != "0.95" || rows[9][col] != want || rows[0][col] != "–" {
				t.Errorf("calibration table %v %v: want %s's top bin (0.95) at %s and no other", head, rows, calModel, want)
			}
		}
		if p.path == "/app/admin/models" {
			// The engine's model: loaded, its slots and its weights' size.
			tiny := `tr[data-model="tiny-coder"]`
			// Busy slots may be other tests' requests still ending on the shared engine.
			if got := b.text(tiny + ` [data-field="slots"]`); !regexp.MustCompile(fmt.Sprintf(`^[0-9] / %d$`, testSched.NParallel)).MatchString(got) {
				t.Errorf("tiny-coder's busy / slots = %q, want n / %d", got, testSched.NParallel)
			}
			if got := b.text(tiny + ` [data-field="weights"]`); !regexp.MustCompile(`^[0-9.]+ (B|KiB|MiB|GiB)$`).MatchString(got) {
				t.Errorf("tiny-coder's weights = %q, want a size", got)
			}
			// The worker's row gives its model's memory.
			b.run("list the workers", chromedp.WaitVisible(css(`table[data-table="workers"]`)))
			row := pageEval[[]string](b, fmt.Sprintf(`[...[...document.querySelectorAll('table[data-table="workers"] tbody tr')]
				.find(tr => tr.textContent.includes(%q))?.querySelectorAll('td') ?? []].map(td => td.textContent.trim())`, workerHost))
			if !slices.Contains(row, "3.0 MiB") || !slices.Contains(row, "4,096") {
				t.Errorf("workers table row of %s = %q, want weights 3.0 MiB and 4,096 KV cells", workerHost, row)
			}
			b.screenshot("admin-models")
		}
	}

	// An evaluation run started from its page on tiny-coder: queued, then
	// listed with the figures its job stored.
	var tiny RegisteredModel
	for _, m := range b.srv.plugin.models.List() {
		if m.Name == "tiny-coder" {
			tiny = m
		}
	}
	form := `form[aria-label="Start an evaluation run"]`
	b.run("start an evaluation run",
		chromedp.Navigate(b.base+"/app/admin/evaluation"),
		chromedp.WaitReady(css(form+` select option[value="`+fmt.Sprint(tiny.ID)+`"]`)),
		chromedp.SendKeys(css(`input[name="repo"]`), "proj"),
		chromedp.SendKeys(css(form+` input[type="number"]`), "3"),
	)
	pageEval[bool](b, fmt.Sprintf(`(() => { const s = document.querySelector(%q);
		Object.getOwnPropertyDescriptor(HTMLSelectElement.prototype, "value").set.call(s, %q);
		s.dispatchEvent(new Event("change", {bubbles: true})); return true; })()`, form+" select", fmt.Sprint(tiny.ID)))
	b.run("queue the run", chromedp.Click(css(form+` button[type="submit"]`)), chromedp.WaitVisible(css(`[role="status"], .alert`)))
	var runID int64
	if err := b.srv.db.QueryRow(context.Background(), "SELECT eval_run_id FROM eval_run WHERE model_name = 'tiny-coder' AND task_count = 3 ORDER BY eval_run_id DESC LIMIT 1").
		Scan(&runID); err != nil {
		t.Fatalf("no evaluation run was queued: %v", err)
	}
	if got := b.text(`.alert`); got != fmt.Sprintf("Run %d queued.", runID) {
		t.Errorf("the page says %q, want Run %d queued.", got, runID)
	}
	var exact, p50, p95 float64
	for deadline := time.Now().Add(2 * time.Minute); ; time.Sleep(100 * time.Millisecond) {
		err := b.srv.db.QueryRow(context.Background(), `SELECT exact_match_rate, latency_p50_ms, latency_p95_ms FROM eval_run
			WHERE eval_run_id = $1 AND finished_at IS NOT NULL AND exact_match_rate IS NOT NULL`, runID).Scan(&exact, &p50, &p95)
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("evaluation run %d did not finish: %v", runID, err)
		}
	}
	b.run("reload the runs", chromedp.Reload(), chromedp.WaitVisible(css(`table[data-table="eval-runs"]`)))
	var evalRow []string
	for _, r := range b.tableRows(`table[data-table="eval-runs"]`) {
		if r[0] == fmt.Sprint(runID) {
			evalRow = r
		}
	}
	wantRow := []string{fmt.Sprint(runID), "finished", "tiny-coder", "", "3", fmt.Sprintf("%.1f %%", exact*100), "",
		fmtMs(p50) + " / " + fmtMs(p95)}
	if len(evalRow) < 8 || evalRow[1] != wantRow[1] || evalRow[2] != wantRow[2] || !strings.HasSuffix(evalRow[3], "proj") ||
		evalRow[4] != wantRow[4] || evalRow[5] != wantRow[5] || evalRow[7] != wantRow[7] {
		t.Errorf("run row = %q, want %q (repository ending in proj)", evalRow, wantRow)
	}

	// The account page: the export link answers the caller's document,
	// and deleting the account signs out and removes the user.
	b.run("open the account page", chromedp.Navigate(b.base+"/app/account"), chromedp.WaitVisible(css(`[data-action="export"]`)))
	if v := pageEval[float64](b, `fetch(document.querySelector('[data-action="export"]').href).then(r => r.json()).then(d => d.schema_version)`); v != 1 {
		t.Errorf("export from the account page: schema_version %v, want 1", v)
	}
	b.run("delete the account",
		chromedp.SendKeys(css(`input[name="confirm-email"]`), email),
		chromedp.Click(css(`[data-action="delete-account"]`)),
		chromedp.WaitVisible(css(`form[aria-label="Sign in"]`)),
	)
	if got := b.fetchStatus("GET", "/api/user/get"); got != http.StatusUnauthorized {
		t.Errorf("after deleting the account GET /api/user/get = %d, want 401", got)
	}
	var n int
	if err := b.srv.db.QueryRow(context.Background(), "SELECT count(*) FROM users WHERE user_id = $1", uid).Scan(&n); err != nil || n != 0 {
		t.Errorf("the deleted user has %d rows (%v)", n, err)
	}
}
