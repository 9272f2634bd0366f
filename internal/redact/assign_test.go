package redact

import (
	"context"
	"encoding/base64"
	"strings"
	"testing"
)

// password draws a password of n characters with at least one digit and
// one symbol, from characters that need no quoting in any of the formats
// below.
func password(n int) string {
	rng := seeded(uint64(n) * 7919)
	return randFrom(rng, alnum, n-2) + randFrom(rng, digits, 1) + randFrom(rng, "!#%^*+-_~", 1)
}

// TestAssignedSecrets: a credential assigned to a key that names one is
// replaced, value only, in every format the rule knows.
func TestAssignedSecrets(t *testing.T) {
	r := newRedactor(t)
	pw, long := password(12), password(20)
	apiKey := "k" + randFrom(seeded(8), alnum, 23)
	letters := randFrom(seeded(10), alnum[:52], 32)
	hex40 := randFrom(seeded(12), "0123456789abcdef", 40)
	b64 := base64.StdEncoding.EncodeToString([]byte("admin:" + pw)) // ends in "="
	a, u := Placeholder(AssignRuleID), Placeholder(URLRuleID)
	tests := []struct{ in, want string }{
		{`password = "` + pw + `"`, `password = "` + a + `"`},
		{`db_password := '` + pw + `'`, `db_password := '` + a + `'`},
		{"  password: " + pw + "\n", "  password: " + a + "\n"},
		{"passwd: " + pw, "passwd: " + a},
		{"secret: '" + pw + "'", "secret: '" + a + "'"},
		{"[database]\npassword = " + pw + "\n", "[database]\npassword = " + a + "\n"},
		{"spring.datasource.password=" + pw, "spring.datasource.password=" + a},
		{"API_KEY=" + pw + "\n", "API_KEY=" + a + "\n"},
		{"export DB_PASS=" + pw, "export DB_PASS=" + a},
		{`{"client_secret": "` + pw + `", "auth": "` + b64 + `"}`, `{"client_secret": "` + a + `", "auth": "` + a + `"}`},
		{`conn = connect(user="app", password="` + pw + `")`, `conn = connect(user="app", password="` + a + `")`},
		{"\tPassword: \"" + pw + "\",\n", "\tPassword: \"" + a + "\",\n"},
		{`password: str = "` + pw + `"`, `password: str = "` + a + `"`},
		{"data:\n  password: " + b64 + "\n", "data:\n  password: " + a + "\n"},
		{`"Server=db;User Id=sa;Password=` + pw + `;"`, `"Server=db;User Id=sa;Password=` + a + `;"`},
		{"Authorization: Basic " + b64, "Authorization: Basic " + a},
		{`headers = {"Authorization": "Bearer ` + long + `"}`, `headers = {"Authorization": "Bearer ` + a + `"}`},
		{"<server><password>" + pw + "</password></server>", "<server><password>" + a + "</password></server>"},
		{`token = "` + pw, `token = "` + a}, // typed: the quote is not closed yet
		{"curl -u admin:" + pw + " https://backup.example.com/export", "curl -u admin:" + a + " https://backup.example.com/export"},
		{"curl --user=admin:" + pw + " https://x.example.com", "curl --user=admin:" + a + " https://x.example.com"},
		// Base64 keys that start like a path or an operator.
		{"aws_secret_access_key = /" + long, "aws_secret_access_key = " + a},
		{"aws_secret_access_key = +" + long, "aws_secret_access_key = " + a},
		// A long value is replaced wherever else it occurs too.
		{"AWS_SECRET_ACCESS_KEY=" + long + "\necho " + long + "\n", "AWS_SECRET_ACCESS_KEY=" + a + "\necho " + a + "\n"},
		// A short one only where it was assigned.
		{"password: Ab3!xy\nname: Ab3!xy\n", "password: " + a + "\nname: Ab3!xy\n"},
		{"DATABASE_URL=postgres://app:" + pw + "@db:5432/app", "DATABASE_URL=postgres://app:" + u + "@db:5432/app"},
		{"mongodb+srv://svc:" + pw + "@cluster0.example.net/db", "mongodb+srv://svc:" + u + "@cluster0.example.net/db"},
		{"redis://:" + pw + "@cache:6379/0", "redis://:" + u + "@cache:6379/0"},
		{"https://deploy:p@ss" + pw + "@git.example.com/repo.git", "https://deploy:" + u + "@git.example.com/repo.git"},
		{"postgres://postgres:postgres@localhost/postgres", "postgres://postgres:" + u + "@localhost/postgres"},
		{"DATABASE_URL=postgres://app:" + pw, "DATABASE_URL=postgres://app:" + u}, // typed: no '@' yet
		{`REDIS_URL = "redis://:` + pw + `"`, `REDIS_URL = "redis://:` + u + `"`},
		{"DATABASE_URL=postgres://app:" + pw + "@", "DATABASE_URL=postgres://app:" + u + "@"},
		{`password = "ab%sc` + pw + `"`, `password = "` + a + `"`}, // %s inside a password
		{"postgres://app:%40" + pw + "@db/app", "postgres://app:" + u + "@db/app"},
		// A random key in prose, followed by more words; one of letters only.
		{"staging uses API_KEY=" + apiKey + " until Monday", "staging uses API_KEY=" + a + " until Monday"},
		{"API_KEY=" + letters + "\n", "API_KEY=" + a + "\n"},
		{"API_KEY=0b" + hex40[2:] + "\n", "API_KEY=" + a + "\n"},     // not a binary literal
		{"PRIVATE_KEY=0x" + hex40 + "\n", "PRIVATE_KEY=" + a + "\n"}, // not a number either
		{"pin_password: 84736251\n", "pin_password: " + a + "\n"},
	}
	for _, tc := range tests {
		out, fs := r.Text(context.Background(), tc.in)
		if out != tc.want {
			t.Errorf("Text(%q)\n = %q\nwant %q", tc.in, out, tc.want)
		}
		if len(fs) == 0 {
			t.Errorf("Text(%q): no findings", tc.in)
		}
		if again, fs := r.Text(context.Background(), out); again != out || fs != nil {
			t.Errorf("redacting %q again changed it: %q %v", out, again, fs)
		}
	}
}

// TestAssignedCodeUnchanged: code that assigns something other than a
// literal credential to such a key is left as it is.
func TestAssignedCodeUnchanged(t *testing.T) {
	r := newRedactor(t)
	for _, in := range []string{
		"password = getPassword()",
		"password: str",
		"def login(user: str, password: str) -> bool:",
		"password: Optional[str] = None",
		"self.password = password",
		"token = tokens[i]",
		`password = os.environ["DB_PASSWORD"]`,
		`password := r.FormValue("password")`,
		"apiKey: process.env.API_KEY,",
		"Password: cfg.Password,",
		"secret = base64.b64decode(raw)",
		"token => token.value",
		"password: ${DB_PASSWORD}",
		`password = "${DB_PASSWORD}"`,
		`password: "{{ .Values.db.password }}"`,
		"DB_PASSWORD=$POSTGRES_PASSWORD",
		`password = "<your-password>"`,
		`password = "********"`,
		`label_password = "Enter your password"`,
		`{"password": "Password", "token": "Token"}`,
		"PWD=/home/dev/project",
		"secret: /run/secrets/db_password",
		"token_ttl: 3600",
		"auth_timeout = 30000",
		`password = ""`,
		"if password == \"\":",
		"password_hint = \"" + password(12) + "\"", // the key does not end in a credential word
		"bypass = " + password(12),
		"postgres://app:${DB_PASSWORD}@db/app",
		"postgres://app@db/app",
		"redis://cache:6379",
		"http://localhost:port",
		`DSN = "postgres://db.internal:5432"`,
		"Password: someLongVariableName2,",
		"token: processEnvironmentAccessToken,",
		"PrivateKey: testRSA2048PrivateKey,",
		"cfg.ClientAuth = RequireAndVerifyClientCert",
		"user@example.com: https://example.com/a:b@c",
		`curl -u "$API_USER:$API_PASS" https://example.com`,
		"ps -u root -o pid,cmd",
		`source := fmt.Sprintf("postgres://%s:%s@%s/%s", user, pass, host, db)`,
		// Lines of Go's own source that looked like assignments.
		"IMAGE_REL_ARM64_TOKEN = 0x000C",
		"f.pass = &emptyPass",
		`cmd.Env = append(cmd.Env, "PWD="+r.Dir)`,
		"Password: password16,",
		"// goes right after the prefix token: StarCoder2's file path",
		`return fmt.Errorf("auth: sweep: %w", err)`,
		`t.Errorf("loadCredential:\nhave %q", got)`,
		`"secret": "\u3299\ufe0f",`,
		`ttl := s.rdb.PTTL(ctx, "session_token:"+sess.Token).Val()`,
		"AllowCredentials: !wildcard,",
		`'api_key': 'c4m_…',`,
	} {
		if out, fs := r.Text(context.Background(), in); out != in || fs != nil {
			t.Errorf("Text(%q) = %q %v, want it unchanged", in, out, fs)
		}
	}
}

// TestOpenPrivateKey: a private-key block whose END line is not there yet
// (typed or pasted line by line, or cut by the cursor) is replaced from its
// BEGIN line to the end; code that only names the header is not.
func TestOpenPrivateKey(t *testing.T) {
	r := newRedactor(t)
	key := privateKeyPEM(t)
	lines := strings.Split(key, "\n")
	src := serverGo(t)[:4<<10] // long enough to be cut into chunks
	for i := 1; i < len(lines); i++ {
		typed := strings.Join(lines[:i], "\n") + "\n" + lines[i][:len(lines[i])/2]
		for _, before := range []string{"key := `", src + "\nconst key = `"} {
			out, fs := r.Text(context.Background(), before+typed)
			if want := before + Placeholder(privateKeyRuleID); out != want || !hasRule(fs, privateKeyRuleID) {
				t.Fatalf("after %d lines: Text = %q %v", i, out[len(before):], fs)
			}
		}
	}
	for _, in := range []string{
		`if strings.HasPrefix(s, "-----BEGIN RSA PRIVATE KEY-----") {` + "\n\treturn parse(s)\n}\n",
		"const header = `-----BEGIN EC PRIVATE KEY-----`\nfunc f() {}\n",
		"-----BEGIN EC PRIVATE KEY-----\nnot a key body, a sentence\n",
		"-----BEGIN PUBLIC KEY-----\nMFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE\n",
	} {
		if out, fs := r.Text(context.Background(), in); out != in || fs != nil {
			t.Errorf("Text(%q) = %q %v, want it unchanged", in, out, fs)
		}
	}
}

// TestAllowlistFixes: gitleaks' allowlists no longer let through a Vault
// token with 24 letters after its "s.", nor a token that contains "false".
func TestAllowlistFixes(t *testing.T) {
	r := newRedactor(t)
	rng := seeded(11)
	vault := "hvs." + randFrom(rng, alnum[:52], 24) + randFrom(rng, alnum, 76)
	pat := "ghp_" + randFrom(rng, alnum, 10) + "False" + randFrom(rng, alnum, 21)
	for _, tc := range []struct{ in, want string }{
		{"vault login " + vault + "\n", "vault login " + Placeholder("vault-service-token") + "\n"},
		{"git push https://" + pat + "@github.com/a/b\n", "git push https://" + Placeholder("github-pat") + "@github.com/a/b\n"},
		// What the allowlists are for still passes.
		{"vault login s." + randFrom(rng, alnum[:52], 24) + "\n", ""},
		{"enabled := false\n", ""},
	} {
		want := tc.want
		if want == "" {
			want = tc.in
		}
		if out, _ := r.Text(context.Background(), tc.in); out != want {
			t.Errorf("Text(%q) = %q, want %q", tc.in, out, want)
		}
	}
}
