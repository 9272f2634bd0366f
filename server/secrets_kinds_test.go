package server

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/hmac"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"hash/crc32"
	"strings"
	"testing"

	"golang.org/x/crypto/ssh"
)

// The planted credentials of the secrets corpus (secrets_corpus_test.go).
// Every value is drawn from crypto/rand when the test runs, in the alphabet,
// length and shape its provider uses (GitHub and npm tokens carry their
// CRC32 checksum, keys are real keys of a throwaway kind), so no real secret
// is in this file and no two runs plant the same one.

const (
	csUpper  = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
	csLower  = "abcdefghijklmnopqrstuvwxyz"
	csDigits = "0123456789"
	csAlnum  = csUpper + csLower + csDigits
	csHex    = "0123456789abcdef"
	csB64    = csAlnum + "+/"
	csB64URL = csAlnum + "-_"
)

// secretKind is one kind of credential.
type secretKind struct {
	name string
	// rule is the rule whose placeholder replaces it.
	rule string
	// file is the file such a credential lives in.
	file string
	// make returns a fresh credential in its file's syntax (one line, or a
	// block) and what must never leave the server: the secret itself and
	// its distinctive core (the token without its prefix, each line of a
	// key's body).
	make func(t *testing.T) (code string, needles []string)
}

// token makes a kind whose credential is a token with a fixed prefix,
// written into code by line.
func token(name, rule, file string, gen func() (prefix, core string), line func(tok string) string) secretKind {
	return secretKind{name: name, rule: rule, file: file, make: func(*testing.T) (string, []string) {
		prefix, core := gen()
		return line(prefix + core), []string{prefix + core, core}
	}}
}

// value makes a kind whose credential is a value (a password) assigned in
// code by line.
func value(name, rule, file string, gen func() string, line func(v string) string) secretKind {
	return secretKind{name: name, rule: rule, file: file, make: func(*testing.T) (string, []string) {
		v := gen()
		return line(v), []string{v}
	}}
}

// keyBlock makes a kind whose credential is a PEM block.
func keyBlock(name, file string, gen func(t *testing.T) *pem.Block, wrap func(block string) string) secretKind {
	return secretKind{name: name, rule: "private-key", file: file, make: func(t *testing.T) (string, []string) {
		block := strings.TrimSuffix(string(pem.EncodeToMemory(gen(t))), "\n")
		other := string(pem.EncodeToMemory(gen(t)))
		return wrap(block), append([]string{block}, pemBodyLines(block, other)...)
	}}
}

// pemBodyLines returns the base64 lines of a PEM block that another key
// of its kind does not have: the lines that are this key's own (the first
// line of every OpenSSH ed25519 key is the same).
func pemBodyLines(block, other string) []string {
	var out []string
	for _, l := range strings.Split(block, "\n") {
		if len(l) >= 24 && !strings.HasPrefix(l, "-----") && !strings.Contains(other, l) {
			out = append(out, l)
		}
	}
	return out
}

func fixed(prefix string, alphabet string, n int) func() (string, string) {
	return func() (string, string) { return prefix, randomFrom(alphabet, n) }
}

// tail ends a random run with a letter or digit: a few rules need a word
// boundary after the token.
func tail(alphabet string, n int) string {
	return randomFrom(alphabet, n-1) + randomFrom(csAlnum, 1)
}

// checksummed is a GitHub or npm style token: 30 random characters and
// the base62 CRC32 of them in 6.
func checksummed(prefix string) func() (string, string) {
	return func() (string, string) {
		body := randomFrom(csAlnum, 30)
		return prefix, body + base62(crc32.ChecksumIEEE([]byte(body)), 6)
	}
}

func base62(n uint32, width int) string {
	const digits = csDigits + csUpper + csLower
	b := make([]byte, width)
	for i := width - 1; i >= 0; i-- {
		b[i] = digits[n%62]
		n /= 62
	}
	return string(b)
}

// newPassword is what a password manager makes: 20 characters, letters and
// digits with symbols among them, starting with a letter.
func newPassword() string {
	return randomFrom(csUpper+csLower, 1) + randomFrom(csAlnum+"!%*+-_~=@^.", 16) + randomFrom(csDigits, 1) +
		randomFrom("!%*+-~=@^", 1) + randomFrom(csAlnum, 1)
}

// b64Secret is a random key of n bytes in standard base64.
func b64Secret(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return base64.StdEncoding.EncodeToString(b)
}

func jwt() (string, string) {
	enc := base64.RawURLEncoding
	head := enc.EncodeToString([]byte(`{"alg":"HS256","typ":"JWT"}`))
	body := enc.EncodeToString([]byte(`{"sub":"` + randomFrom(csDigits, 10) + `","jti":"` + randomFrom(csHex, 16) + `","scope":"repo admin"}`))
	key := make([]byte, 32)
	rand.Read(key)
	mac := hmac.New(sha256.New, key)
	mac.Write([]byte(head + "." + body))
	return head + ".", body + "." + enc.EncodeToString(mac.Sum(nil))
}

func rsaBlock(t *testing.T) *pem.Block {
	k, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		t.Fatal(err)
	}
	return &pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(k)}
}

func ecBlock(t *testing.T) *pem.Block {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalECPrivateKey(k)
	if err != nil {
		t.Fatal(err)
	}
	return &pem.Block{Type: "EC PRIVATE KEY", Bytes: der}
}

func pkcs8Block(t *testing.T) *pem.Block {
	_, k, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		t.Fatal(err)
	}
	return &pem.Block{Type: "PRIVATE KEY", Bytes: der}
}

func opensshBlock(t *testing.T) *pem.Block {
	_, k, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	b, err := ssh.MarshalPrivateKey(k, "deploy@ci")
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// pgpBlock is an armoured PGP private-key block of random packet bytes:
// the right shape, not a usable key.
func pgpBlock(*testing.T) *pem.Block {
	b := make([]byte, 600)
	rand.Read(b)
	b[0] = 0x95 // a secret-key packet tag
	return &pem.Block{Type: "PGP PRIVATE KEY BLOCK", Bytes: b}
}

// gcpServiceAccount is the private_key line of a service account's JSON
// key: a PKCS#8 block with its newlines escaped.
func gcpServiceAccount(t *testing.T) (string, []string) {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		t.Fatal(err)
	}
	block := string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}))
	esc := strings.ReplaceAll(block, "\n", `\n`)
	return `  "private_key_id": "` + randomFrom(csHex, 40) + `",` + "\n" + `  "private_key": "` + esc + `",`,
		append([]string{esc}, pemBodyLines(block, "")...)
}

// basicAuth is base64("user:password"), as Docker's config.json, Basic
// headers and Kubernetes secrets hold credentials.
func basicAuth() string {
	return base64.StdEncoding.EncodeToString([]byte("deploy:" + newPassword()))
}

// secretKinds are the kinds of the corpus. The lines around each value are
// the way such a credential is usually written; where a provider's token
// has its own rule, it is put where no assignment rule would see it, so
// that the provider's rule is what is tested.
var secretKinds = []secretKind{
	// Cloud keys.
	token("aws-access-key-id", "aws-access-token", "settings.py", fixed("AKIA", "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567", 16),
		func(s string) string { return `boto3.client("s3", aws_access_key_id="` + s + `")` }),
	value("aws-secret-access-key", "secret-assignment", "credentials", func() string { return b64Secret(30) },
		func(v string) string { return "[default]\naws_secret_access_key = " + v }),
	token("gcp-api-key", "gcp-api-key", "firebase.js", func() (string, string) { return "AIza", tail(csB64URL, 35) },
		func(s string) string {
			return `fetch("https://maps.googleapis.com/maps/api/geocode/json?address=x&key=` + s + `")`
		}),
	{name: "gcp-service-account-key", rule: "private-key", file: "service-account.json", make: gcpServiceAccount},
	token("azure-ad-client-secret", "azure-ad-client-secret", "login.sh",
		func() (string, string) {
			return "", randomFrom(csAlnum, 3) + randomFrom(csDigits, 1) + "Q~" + tail(csAlnum+"_~.-", 34)
		},
		func(s string) string {
			return "az login --service-principal -u " + randomFrom(csHex, 8) + " -p " + s + " --tenant acme"
		}),
	value("azure-storage-account-key", "secret-assignment", "appsettings.json", func() string { return b64Secret(64) },
		func(v string) string {
			return `"Storage": "DefaultEndpointsProtocol=https;AccountName=acme;AccountKey=` + v + `;EndpointSuffix=core.windows.net",`
		}),

	// Source forges and package registries.
	token("github-pat", "github-pat", "deploy.sh", checksummed("ghp_"),
		func(s string) string { return "git clone https://" + s + "@github.com/acme/app.git" }),
	token("github-fine-grained-pat", "github-fine-grained-pat", "ci.sh",
		func() (string, string) { return "github_pat_", randomFrom(csAlnum, 22) + "_" + randomFrom(csAlnum, 59) },
		func(s string) string { return "echo " + s + " | gh auth login --with-token" }),
	token("github-oauth-token", "github-oauth", "hosts.yml", checksummed("gho_"),
		func(s string) string { return "github.com:\n    user: octo\n    oauth_token: " + s }),
	token("github-app-token", "github-app-token", "action.js", checksummed("ghs_"),
		func(s string) string { return "const octokit = new Octokit({ auth: `" + s + "` });" }),
	token("gitlab-pat", "gitlab-pat", "gitlab.py", func() (string, string) { return "glpat-", tail(csB64URL, 20) },
		func(s string) string { return `gl = gitlab.Gitlab("https://gitlab.com", private_token="` + s + `")` }),
	token("npm-token", "npm-access-token", ".npmrc", checksummed("npm_"),
		func(s string) string { return "//registry.npmjs.org/:_authToken=" + s }),
	token("pypi-token", "pypi-upload-token", ".pypirc", fixed("pypi-AgEIcHlwaS5vcmc", csB64URL, 120),
		func(s string) string { return "[pypi]\nusername = __token__\npassword = " + s }),

	// SaaS APIs.
	token("slack-bot-token", "slack-bot-token", "bot.py",
		func() (string, string) {
			return "xoxb-", randomFrom(csDigits, 12) + "-" + randomFrom(csDigits, 13) + "-" + randomFrom(csAlnum, 24)
		},
		func(s string) string { return `client = WebClient(os.environ.get("SLACK_BOT", "` + s + `"))` }),
	token("slack-user-token", "slack-user-token", "export.py",
		func() (string, string) {
			return "xoxp-", randomFrom(csDigits, 11) + "-" + randomFrom(csDigits, 12) + "-" + randomFrom(csDigits, 13) + "-" + randomFrom(csHex, 32)
		},
		func(s string) string { return `requests.get(url, headers={"X-Slack": "` + s + `"})` }),
	token("slack-webhook", "slack-webhook-url", "notify.py",
		func() (string, string) {
			return "https://hooks.slack.com/services/", "T" + randomFrom(csUpper+csDigits, 8) + "/B" + randomFrom(csUpper+csDigits, 10) + "/" + randomFrom(csAlnum, 24)
		},
		func(s string) string { return `requests.post("` + s + `", json={"text": msg})` }),
	// Both stripe-access-token and secret-assignment (api_key:) find the same
	// span; the smaller rule id names it.
	token("stripe-secret-key", "secret-assignment", "billing.rb", fixed("sk_live_", csAlnum, 99),
		func(s string) string { return `Stripe::Charge.create({amount: 100}, {api_key: "` + s + `"})` }),
	token("twilio-api-key", "twilio-api-key", "sms.py", fixed("SK", csHex, 32),
		func(s string) string { return `client = Client("` + s + `", api_secret, account_sid)` }),
	token("sendgrid-api-key", "sendgrid-api-token", "mail.py",
		func() (string, string) { return "SG.", randomFrom(csB64URL, 22) + "." + tail(csB64URL, 43) },
		func(s string) string { return `sg = SendGridAPIClient("` + s + `")` }),
	token("openai-api-key", "openai-api-key", "chat.py",
		func() (string, string) { return "sk-proj-", randomFrom(csB64URL, 74) + "T3BlbkFJ" + tail(csB64URL, 74) },
		func(s string) string { return `client = OpenAI(base_url=url, default_headers={"k": "` + s + `"})` }),
	token("anthropic-api-key", "anthropic-api-key", "claude.py",
		func() (string, string) { return "sk-ant-api03-", randomFrom(csB64URL, 93) + "AA" },
		func(s string) string { return `client = anthropic.Anthropic(default_headers={"k": "` + s + `"})` }),
	token("huggingface-token", "huggingface-access-token", "train.py", fixed("hf_", csUpper+csLower, 34),
		func(s string) string { return `huggingface_hub.login("` + s + `")` }),
	token("digitalocean-token", "digitalocean-pat", "provision.sh", fixed("dop_v1_", csHex, 64),
		func(s string) string { return "doctl auth init -t " + s }),
	token("shopify-token", "shopify-access-token", "shop.js", fixed("shpat_", csHex, 32),
		func(s string) string { return `headers["X-Shopify-Access-Token"] = "` + s + `";` }),
	token("databricks-token", "databricks-api-token", "job.py", fixed("dapi", csHex, 32),
		func(s string) string { return `w = WorkspaceClient(host=host, config={"t": "` + s + `"})` }),
	token("vault-token", "vault-service-token", "vault.sh", fixed("hvs.", csB64URL, 100),
		func(s string) string { return "vault login " + s }),
	token("age-secret-key", "age-secret-key", "keys.txt", fixed("AGE-SECRET-KEY-1", "QPZRY9X8GF2TVDW0S3JN54KHCE6MUA7L", 58),
		func(s string) string {
			return "# public key: age1" + randomFrom("qpzry9x8gf2tvdw0s3jn54khce6mua7l", 58) + "\n" + s
		}),
	token("jwt", "jwt", "api.http", jwt,
		func(s string) string { return "GET https://api.example.com/v1/me\nX-Session: " + s }),

	// Private keys.
	keyBlock("rsa-private-key", "id_rsa", rsaBlock, func(b string) string { return b }),
	keyBlock("ec-private-key", "server.key", ecBlock, func(b string) string { return b }),
	keyBlock("openssh-private-key", "id_ed25519", opensshBlock, func(b string) string { return b }),
	keyBlock("pgp-private-key", "private.asc", pgpBlock, func(b string) string { return b }),
	keyBlock("pkcs8-private-key", "signer.py", pkcs8Block, func(b string) string { return `KEY = """` + "\n" + b + "\n" + `"""` }),

	// URLs with a password.
	value("postgres-url", "url-password", ".env", newPassword,
		func(v string) string {
			return "DATABASE_URL=postgres://app:" + v + "@db.internal:5432/app?sslmode=require"
		}),
	value("mysql-url", "url-password", "db.py", newPassword,
		func(v string) string {
			return `engine = create_engine("mysql+pymysql://root:` + v + `@localhost:3306/shop")`
		}),
	value("mongodb-srv-url", "url-password", "config.yaml", newPassword,
		func(v string) string {
			return "mongo:\n  uri: mongodb+srv://svc:" + v + "@cluster0.ab1cd.mongodb.net/prod?retryWrites=true"
		}),
	value("redis-url", "url-password", "docker-compose.yml", newPassword,
		func(v string) string { return "      REDIS_URL: redis://:" + v + "@cache:6379/0" }),
	value("amqp-url", "url-password", "celeryconfig.py", newPassword,
		func(v string) string { return `broker_url = "amqp://worker:` + v + `@rabbit:5672/jobs"` }),
	value("basic-auth-url", "url-password", "Dockerfile", newPassword,
		func(v string) string {
			return "RUN pip install --index-url https://deploy:" + v + "@pypi.example.com/simple acme"
		}),
	value("jdbc-url", "secret-assignment", "application.conf", newPassword,
		func(v string) string { return `db.url = "jdbc:postgresql://db:5432/app?user=app&password=` + v + `"` }),

	// Passwords and secrets in configuration.
	value("yaml-password", "secret-assignment", "config.yaml", newPassword,
		func(v string) string { return "database:\n  host: db\n  password: " + v }),
	value("yaml-passwd", "secret-assignment", "ldap.yml", newPassword,
		func(v string) string { return "bind:\n  dn: cn=admin\n  passwd: " + v }),
	value("yaml-secret", "secret-assignment", "jwt.yaml", newPassword,
		func(v string) string { return "jwt:\n  secret: '" + v + "'" }),
	value("toml-password", "secret-assignment", "Config.toml", newPassword,
		func(v string) string { return "[database]\npassword = \"" + v + "\"" }),
	value("ini-password", "secret-assignment", "my.cnf", newPassword,
		func(v string) string { return "[client]\nuser = app\npassword = " + v }),
	value("properties-password", "secret-assignment", "application.properties", newPassword,
		func(v string) string { return "spring.datasource.password=" + v }),
	value("env-api-key", "secret-assignment", ".env", func() string { return randomFrom(csHex, 40) },
		func(v string) string { return "API_KEY=" + v }),
	value("env-export-password", "secret-assignment", "env.sh", newPassword,
		func(v string) string { return "export DB_PASSWORD='" + v + "'" }),
	value("json-client-secret", "secret-assignment", "oauth.json", newPassword,
		func(v string) string { return `  "client_id": "acme-web",` + "\n" + `  "client_secret": "` + v + `",` }),
	value("python-kwarg-password", "secret-assignment", "db.py", newPassword,
		func(v string) string { return `conn = psycopg2.connect(host="db", user="app", password="` + v + `")` }),
	value("go-struct-password", "secret-assignment", "main.go", newPassword,
		func(v string) string {
			return "cfg := mysql.Config{User: \"app\", Passwd: \"" + v + "\", Net: \"tcp\"}"
		}),
	value("connection-string", "secret-assignment", "Program.cs", newPassword,
		func(v string) string { return `var cs = "Server=db;Database=shop;User Id=sa;Password=` + v + `;";` }),
	value("authorization-basic", "secret-assignment", "request.http", basicAuth,
		func(v string) string { return "POST https://api.example.com/upload\nAuthorization: Basic " + v }),
	value("curl-user", "secret-assignment", "backup.sh", newPassword,
		func(v string) string { return "curl -u admin:" + v + " https://backup.example.com/api/export" }),

	// Docker and Kubernetes.
	value("docker-config-auth", "secret-assignment", "config.json", basicAuth,
		func(v string) string { return `{"auths": {"registry.example.com": {"auth": "` + v + `"}}}` }),
	value("docker-compose-password", "secret-assignment", "docker-compose.yml", newPassword,
		func(v string) string { return "    environment:\n      - POSTGRES_PASSWORD=" + v }),
	value("kubernetes-secret", "secret-assignment", "secret.yaml", basicAuth,
		func(v string) string {
			return "apiVersion: v1\nkind: Secret\nmetadata:\n  name: registry\ntype: Opaque\ndata:\n  password: " + v
		}),
	value("maven-settings", "secret-assignment", "settings.xml", newPassword,
		func(v string) string {
			return "<server><id>nexus</id><username>deploy</username><password>" + v + "</password></server>"
		}),
}
