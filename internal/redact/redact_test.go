package redact

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	mathrand "math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/zricethezav/gitleaks/v8/report"
)

// The tokens below are generated, never written out, so that this file does
// not itself trip secret scanners.

const (
	upperDigits = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"
	alnum       = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
	digits      = "0123456789"
	word        = alnum + "_"
)

func randFrom(r *mathrand.Rand, alphabet string, n int) string {
	b := make([]byte, n)
	for i := range b {
		b[i] = alphabet[r.IntN(len(alphabet))]
	}
	return string(b)
}

func seeded(seed uint64) *mathrand.Rand {
	return mathrand.New(mathrand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
}

func awsKey(r *mathrand.Rand) string    { return "AKIA" + randFrom(r, upperDigits, 16) }
func githubPAT(r *mathrand.Rand) string { return "ghp_" + randFrom(r, alnum, 36) }
func fineGrainedPAT(r *mathrand.Rand) string {
	return "github_pat_" + randFrom(r, alnum, 22) + "_" + randFrom(r, alnum, 59)
}
func slackBotToken(r *mathrand.Rand) string {
	return "xoxb-" + randFrom(r, digits, 12) + "-" + randFrom(r, digits, 13) + "-" + randFrom(r, alnum, 24)
}

func jwtToken(t testing.TB) string {
	t.Helper()
	enc := base64.RawURLEncoding
	head := enc.EncodeToString([]byte(`{"alg":"HS256","typ":"JWT"}`))
	body := enc.EncodeToString([]byte(`{"sub":"1234567890","name":"Jane Doe","iat":1716239022,"scope":"repo admin"}`))
	mac := hmac.New(sha256.New, []byte("test signing key"))
	mac.Write([]byte(head + "." + body))
	return head + "." + body + "." + enc.EncodeToString(mac.Sum(nil))
}

func privateKeyPEM(t testing.TB) string {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalECPrivateKey(k)
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSuffix(string(pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: der})), "\n")
}

var (
	sharedOnce sync.Once
	shared     *Redactor
	sharedErr  error
)

func newRedactor(t testing.TB) *Redactor {
	t.Helper()
	sharedOnce.Do(func() { shared, sharedErr = New(Options{}) })
	if sharedErr != nil {
		t.Fatal(sharedErr)
	}
	return shared
}

func serverGo(t testing.TB) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(runtime.GOROOT(), "src", "net", "http", "server.go"))
	if err != nil {
		t.Skipf("Go source not available: %v", err)
	}
	return string(b)
}

func TestPlantedSecrets(t *testing.T) {
	r := newRedactor(t)
	rng := seeded(1)
	aws, pat, fg, slack := awsKey(rng), githubPAT(rng), fineGrainedPAT(rng), slackBotToken(rng)
	gho := "gho_" + randFrom(rng, alnum, 36)
	ghu := "ghu_" + randFrom(rng, alnum, 36)
	ghs := "ghs_" + randFrom(rng, alnum, 36)
	ghr := "ghr_" + randFrom(rng, alnum, 36)
	jwt := jwtToken(t)
	key := privateKeyPEM(t)

	tests := []struct {
		name   string
		in     string
		secret string
		rule   string
	}{
		{"aws access key", `cfg := aws.Config{AccessKeyID: "` + aws + `"}`, aws, "aws-access-token"},
		{"github pat", `token = "` + pat + `"`, pat, "github-pat"},
		{"github oauth", "auth: " + gho + "\n", gho, "github-oauth"},
		{"github user-to-server", `t := "` + ghu + `"`, ghu, "github-app-token"},
		{"github server-to-server", `t := "` + ghs + `"`, ghs, "github-app-token"},
		{"github refresh", `t := "` + ghr + `"`, ghr, "github-refresh-token"},
		{"github fine-grained pat", "export GH_TOKEN=" + fg + "\n", fg, "github-fine-grained-pat"},
		{"slack bot token", `SLACK = "` + slack + `"`, slack, "slack-bot-token"},
		{"jwt with signature", `const auth = "Bearer ` + jwt + `";`, jwt, "jwt"},
		{"private key block", "const key = `\n" + key + "\n`\n", key, "private-key"},
		{"gitleaks:allow on the line", `token = "` + pat + `" // gitleaks:allow`, pat, "github-pat"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			out, fs := r.Text(context.Background(), tc.in)
			want := strings.Replace(tc.in, tc.secret, Placeholder(tc.rule), 1)
			if out != want {
				t.Errorf("Text =\n%s\nwant\n%s", out, want)
			}
			if !hasRule(fs, tc.rule) {
				t.Errorf("findings %v lack %s", fs, tc.rule)
			}
			assertNoFragment(t, out, tc.secret)
		})
	}
}

// assertNoFragment fails when any 12-byte piece of secret survives in out,
// catching partial redaction (a leaked signature, key body or token tail).
func assertNoFragment(t *testing.T, out, secret string) {
	t.Helper()
	for _, line := range strings.Split(secret, "\n") {
		for i := 0; i+12 <= len(line); i += 6 {
			if frag := line[i : i+12]; strings.Contains(out, frag) && !strings.HasPrefix(frag, "-----") {
				t.Fatalf("fragment %q of the secret survived redaction", frag)
			}
		}
	}
}

func hasRule(fs []Finding, rule string) bool {
	for _, f := range fs {
		if f.RuleID == rule && f.Count > 0 {
			return true
		}
	}
	return false
}

func TestSecretInsideSourceFile(t *testing.T) {
	r := newRedactor(t)
	src := serverGo(t)
	rng := seeded(2)
	aws, pat := awsKey(rng), githubPAT(rng)
	key := privateKeyPEM(t)
	mid := strings.Index(src[len(src)/2:], "\n") + len(src)/2 + 1
	planted := src[:mid] +
		"var awsKeyID = \"" + aws + "\"\n" +
		"var ghToken = \"" + pat + "\" // used twice: " + pat + "\n" +
		"const pemKey = `" + key + "`\n" +
		src[mid:]

	out, fs := r.Text(context.Background(), planted)
	want := src[:mid] +
		"var awsKeyID = \"<redacted:aws-access-token>\"\n" +
		"var ghToken = \"<redacted:github-pat>\" // used twice: <redacted:github-pat>\n" +
		"const pemKey = `<redacted:private-key>`\n" +
		src[mid:]
	if out != want {
		t.Fatalf("redacted file differs from the expected one (got %d bytes, want %d)", len(out), len(want))
	}
	wantCounts := map[string]int{"aws-access-token": 1, "github-pat": 2, "private-key": 1}
	if len(fs) != len(wantCounts) {
		t.Fatalf("findings = %v, want %v", fs, wantCounts)
	}
	for _, f := range fs {
		if wantCounts[f.RuleID] != f.Count {
			t.Errorf("finding %s count %d, want %d", f.RuleID, f.Count, wantCounts[f.RuleID])
		}
	}
}

func TestOrdinarySourceUnchanged(t *testing.T) {
	r := newRedactor(t)
	src := serverGo(t)
	out, fs := r.Text(context.Background(), src)
	if len(fs) != 0 {
		t.Fatalf("false positives on net/http/server.go: %v", fs)
	}
	if out != src {
		t.Fatal("clean source was changed")
	}
}

func TestGenericRule(t *testing.T) {
	// A key that only starts with a credential word: the generic rule takes
	// it, the secret-assignment rule does not (the word must end the key).
	in := `tokenValue := "Xk9vQ2mT7pLw4zRb"` + "\n"
	r := newRedactor(t)
	if out, fs := r.Text(context.Background(), in); out != in || fs != nil {
		t.Fatalf("default redactor used the generic rule: %q %v", out, fs)
	}
	g, err := New(Options{IncludeGeneric: true})
	if err != nil {
		t.Fatal(err)
	}
	out, fs := g.Text(context.Background(), in)
	if want := `tokenValue := "<redacted:generic-api-key>"` + "\n"; out != want {
		t.Fatalf("generic Text = %q, want %q", out, want)
	}
	if !hasRule(fs, GenericRuleID) {
		t.Fatalf("findings %v lack %s", fs, GenericRuleID)
	}
	if got := len(g.Rules()) - len(r.Rules()); got != 1 {
		t.Fatalf("generic redactor has %d more rules, want 1", got)
	}
}

func TestDeterministicAndIdempotent(t *testing.T) {
	r := newRedactor(t)
	rng := seeded(3)
	in := "a := \"" + awsKey(rng) + "\"\nb := \"" + githubPAT(rng) + "\"\nc := \"" + jwtToken(t) + "\"\n" + privateKeyPEM(t) + "\n"
	first, fs1 := r.Text(context.Background(), in)
	for range 20 {
		out, fs := r.Text(context.Background(), in)
		if out != first || !equalFindings(fs, fs1) {
			t.Fatalf("Text is not deterministic:\n%s\nvs\n%s", out, first)
		}
	}
	again, fs := r.Text(context.Background(), first)
	if again != first || fs != nil {
		t.Fatalf("redacting redacted text changed it: %v", fs)
	}
}

func equalFindings(a, b []Finding) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func TestCached(t *testing.T) {
	r, err := New(Options{CacheSize: 2})
	if err != nil {
		t.Fatal(err)
	}
	rng := seeded(4)
	dirty := "x := \"" + githubPAT(rng) + "\"\n"
	clean := "func add(a, b int) int { return a + b }\n"
	for range 3 {
		want, wantFs := r.Text(context.Background(), dirty)
		got, fs := r.Cached(context.Background(), dirty)
		if got != want || !equalFindings(fs, wantFs) {
			t.Fatalf("Cached = %q %v, want %q %v", got, fs, want, wantFs)
		}
		fs[0].Count = 99 // callers may not corrupt the cache
		if got, fs := r.Cached(context.Background(), clean); got != clean || fs != nil {
			t.Fatalf("Cached(clean) = %q %v", got, fs)
		}
	}
	if n := r.whole.Len(); n != 2 {
		t.Fatalf("cache holds %d entries, want 2", n)
	}
	off, err := New(Options{CacheSize: -1})
	if err != nil {
		t.Fatal(err)
	}
	if got, _ := off.Cached(context.Background(), dirty); got != "x := \"<redacted:github-pat>\"\n" {
		t.Fatalf("uncached Cached = %q", got)
	}
}

func TestCancelledFailsClosed(t *testing.T) {
	r := newRedactor(t)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	out, fs := r.Cached(ctx, "x := \""+githubPAT(seeded(5))+"\"")
	if out != Incomplete || len(fs) != 1 || fs[0].RuleID != IncompleteRuleID {
		t.Fatalf("cancelled scan = %q %v", out, fs)
	}
	if r.whole.Len() != 0 {
		t.Fatal("a cancelled scan was cached")
	}
	// A deadline in the middle of a scan also fails closed, never partially.
	ctx, cancel = context.WithTimeout(context.Background(), time.Microsecond)
	defer cancel()
	src := serverGo(t) + "\nvar k = \"" + awsKey(seeded(6)) + "\"\n"
	if out, _ := r.Text(ctx, src); out != Incomplete && strings.Contains(out, "AKIA") {
		t.Fatal("a timed-out scan returned unredacted text")
	}
}

func TestApplyMergesOverlaps(t *testing.T) {
	f := func(rule, secret string) hit { return hit{rule: rule, secret: secret} }
	tests := []struct {
		name   string
		in     string
		hs     []hit
		want   string
		counts []Finding
	}{
		{"none", "abcdefghij", nil, "abcdefghij", nil},
		{"every occurrence", "x=SECRET1; y=SECRET1", []hit{f("r", "SECRET1")}, "x=<redacted:r>; y=<redacted:r>", []Finding{{"r", 2}}},
		{"contained: longest labels", "k=AAAABBBBCCCC.", []hit{f("short", "BBBB"), f("long", "AAAABBBBCCCC")}, "k=<redacted:long>.", []Finding{{"long", 1}}},
		{"partial overlap merged", "k=AAAABBBBCCCC.", []hit{f("a", "AAAABBBB"), f("b", "BBBBCCCC")}, "k=<redacted:a>.", []Finding{{"a", 1}}},
		{"specific beats generic on a tie", "k=TOKEN", []hit{f(GenericRuleID, "TOKEN"), f("z-rule", "TOKEN")}, "k=<redacted:z-rule>", []Finding{{"z-rule", 1}}},
		{"placeholder text never rescanned", "SECRETVALUE redacted", []hit{f("a", "SECRETVALUE"), f("b", "redacted")}, "<redacted:a> <redacted:b>", []Finding{{"a", 1}, {"b", 1}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, counts := apply(tc.in, tc.hs)
			if got != tc.want || !equalFindings(counts, tc.counts) {
				t.Fatalf("apply = %q %v, want %q %v", got, counts, tc.want, tc.counts)
			}
			rev := slices.Clone(tc.hs)
			slices.Reverse(rev)
			if got, _ := apply(tc.in, rev); got != tc.want {
				t.Fatalf("apply depends on finding order: %q", got)
			}
		})
	}
}

func TestHitsFromFindings(t *testing.T) {
	fs := []report.Finding{
		{RuleID: "a", Secret: "S1", Match: "key=S1"},
		{RuleID: "a", Secret: "S1", Match: "key=S1"},
		{RuleID: "b", Match: "WHOLE"},
		{RuleID: "c"},
	}
	want := []hit{{rule: "a", secret: "S1"}, {rule: "b", secret: "WHOLE"}}
	if got := hits(fs); !slices.Equal(got, want) {
		t.Fatalf("hits = %v, want %v", got, want)
	}
}

func TestConcurrentShared(t *testing.T) {
	r := newRedactor(t)
	rng := seeded(7)
	inputs := make([]string, 8)
	wants := make([]string, 8)
	for i := range inputs {
		pat := githubPAT(rng)
		inputs[i] = "// file " + string(rune('a'+i)) + "\nvar tok = \"" + pat + "\"\n"
		wants[i] = "// file " + string(rune('a'+i)) + "\nvar tok = \"<redacted:github-pat>\"\n"
	}
	var wg sync.WaitGroup
	errs := make(chan string, 8)
	for g := range 8 {
		wg.Go(func() {
			for i := range 25 {
				in := inputs[(g+i)%len(inputs)]
				want := wants[(g+i)%len(inputs)]
				var out string
				if i%2 == 0 {
					out, _ = r.Text(context.Background(), in)
				} else {
					out, _ = r.Cached(context.Background(), in)
				}
				if out != want {
					errs <- out
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Errorf("concurrent Text = %q", e)
	}
}
