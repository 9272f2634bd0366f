package redact

import (
	"regexp"
	"slices"
	"strings"
)

// Credentials without a provider format (a database password, a shared
// secret, a basic-auth URL) are found by where they stand rather than by
// what they look like. Two rules of this package do it, beside gitleaks':
//
//   - AssignRuleID: a key that names a credential (password, passwd, pwd,
//     pass, secret, token, credentials, auth, authorization, api_key,
//     secret_key, access_key and the like, at the end of the key), an
//     assignment operator (=, :, :=, =>) and a literal value: code
//     (password = "…", Password: "…"), YAML, TOML, INI, .properties, .env
//     (API_KEY=…), JSON, connection strings (…;Password=…;), Authorization
//     headers (the word after Basic or Bearer), XML elements
//     (<password>…</password>) and the user:password of curl's -u and
//     --user.
//   - URLRuleID: the password of a URL's user information, as in
//     postgres://user:password@host or https://user:password@host.
//
// They replace the value only; the key, the user name and the host stay,
// so the model still sees what the line does.
//
// A value that is code rather than a literal is left alone, so that code
// completion keeps its input: a call, index or expression
// (getPassword(), os.environ["PW"], &pw), a name or attribute path
// (password, self.password, process.env.API_KEY, str in password: str), a
// template or reference (${DB_PASSWORD}, {{ .Values.pw }}, $PW,
// <password>), a path, a number (0x000C), a run of one character
// (********), and quoted text holding whitespace (a label or a sentence).
// A bare identifier counts where it ends its line (DB_PASSWORD=hunter22,
// not Password: password16,) or where it looks random (random). A value
// shorter than minValue is kept too: it is a placeholder more often than a
// credential.
//
// Text being typed is covered as well: a quoted value whose closing quote
// is not there yet, a URL whose password has no '@' after it yet, and a
// private-key block without its END line (openKey).
//
// The rules run only where they may match (contextHits), so a chunk
// without such a place costs a few byte searches.

// AssignRuleID is the rule that finds a credential assigned to a key that
// names one.
const AssignRuleID = "secret-assignment"

// URLRuleID is the rule that finds the password of a URL's user
// information.
const URLRuleID = "url-password"

// minValue is the shortest assigned value taken for a credential.
const minValue = 6

// wholeValue is the shortest value that is also replaced wherever else it
// occurs in the text (a password used twice). A shorter one, or a plain
// word such as the "postgres" of postgres://postgres:postgres@db, is
// replaced only where it was assigned: replacing every occurrence of a
// short word would wreck the text around it.
const wholeValue = 8

// keyName matches a key that names a credential: the credential word ends
// the key (db_password, clientSecret, GITHUB_TOKEN, spring.datasource.password),
// so password_hint, tokenizer or secret_name do not count. "pass" counts only
// as a word of its own (DB_PASS, not bypass).
const keyName = `[\w.-]*(?:passw(?:or)?d|pwd|secret|token|credentials?|auth|authorization|` +
	`(?:api|access|secret|private|signing|encryption|master|client|account)[_.-]?key)|(?:[\w.-]*[_.-])?pass`

// assignRe matches, from the start of a key, the key and the assignment
// operator, or a type annotation and '=' (password: str = …, password: str
// | None = …); the value starts where the match ends.
var assignRe = regexp.MustCompile(`(?i)^(` + keyName + `)["']?` +
	`(?:[ \t]*:[ \t]*[\w.\[\]|]+(?:[ \t]*\|[ \t]*[\w.\[\]]+)*[ \t]+=|[ \t]*(?::=|=>|=|:))[ \t]*`)

// userFlagRe matches, from the blank before it, the -u or --user flag of
// curl and the like and the user name before the password.
var userFlagRe = regexp.MustCompile(`^[ \t](?:-u|--user)(?:[ \t]+|=)['"]?[^\s:'"]+:`)

// xmlRe matches an XML element that holds a credential
// (<password>…</password>, as in Maven's settings.xml).
var xmlRe = regexp.MustCompile(`(?i)^<(` + keyName + `)>([^<\n]*)</`)

// urlRe matches, from the start of its scheme, a URL up to the password of
// its user information (group 1), which may hold '@': the last '@' before
// the host ends it. The user may be empty (redis://:password@host), and so
// may the host at the end of the line, while it is typed.
var urlRe = regexp.MustCompile(`(?i)^[a-z][a-z0-9+.-]*://[^\s:/?#@"'\x60<>]*:([^\s/?#"'\x60<>]+)@(?:[^\s/?#@"'\x60<>]|["'\x60]?$)`)

// openURLRe matches, from the start of its scheme, a URL whose user
// information ends its line (or a quote closes it) before its '@': the
// password (group 1) is being typed.
var openURLRe = regexp.MustCompile(`(?i)^[a-z][a-z0-9+.-]*://[^\s:/?#@"'\x60<>]*:([^\s/?#@"'\x60<>]+)["'\x60]?$`)

// credentialWords are the words that end a key keyName matches (lower
// case).
var credentialWords = []string{"password", "passwd", "pwd", "pass", "secret", "token", "credential", "credentials",
	"auth", "authorization", "key"}

// contextHits returns the secrets of this package's rules in c, each with
// the text before it that located it, so that it is replaced there even
// when it is too short to be replaced everywhere.
//
// The regular expressions run only where they may match, and anchored
// there, found from the bytes that every match holds: an operator ('=',
// ':') or the end of an XML tag ('>') right after a credential word
// (keyBefore), the "://" of a URL, the -u or --user of a command line.
// Most lines of code have none, so a chunk costs a few byte searches and a
// look at the word before each operator.
func contextHits(c string) []hit {
	var keys, urls []int // where keys and URLs start
	for _, op := range []byte{'=', ':', '>'} {
		for i := 0; ; i++ {
			j := strings.IndexByte(c[i:], op)
			if j < 0 {
				break
			}
			i += j
			if k := keyBefore(c, i); k >= 0 {
				keys = append(keys, k)
			} else if op == ':' && strings.HasPrefix(c[i:], "://") {
				urls = append(urls, wordStart(c, i, "+.-"))
			}
		}
	}
	for _, flag := range []string{"-u ", "--user"} { // after a blank, which the search would find everywhere
		for i := 1; i < len(c); {
			j := strings.Index(c[i:], flag)
			if j < 0 {
				break
			}
			if i += j; c[i-1] == ' ' || c[i-1] == '\t' {
				keys = append(keys, i-1)
			}
			i += len(flag)
		}
	}
	var hs []hit
	for _, k := range sortedSet(keys) {
		hs = assignHit(hs, c[k:lineEnd(c, k)], k > 0 && c[k-1] == '<')
	}
	for _, u := range sortedSet(urls) {
		hs = urlHit(hs, c[u:lineEnd(c, u)])
	}
	return openKey(hs, c)
}

// privateKeyRuleID is gitleaks' rule for private-key blocks.
const privateKeyRuleID = "private-key"

// openKey appends the private-key block that begins in c and does not end
// there: a key being pasted or typed, or a prefix whose cursor is inside
// one. gitleaks' rule needs the END line, so without this the lines typed
// so far would pass. An open block is a BEGIN … PRIVATE KEY----- line
// followed only by lines of a key's body (keyBody) up to the end of c, so
// that code naming the header ("-----BEGIN RSA PRIVATE KEY-----" in a
// parser) is left alone. The end of c is the end of the text: a chunk
// never ends inside an open block (chunkSpans), except at the one line it
// shares with the next chunk, which then holds the whole block.
func openKey(hs []hit, c string) []hit {
	if !strings.Contains(c, "-----BEGIN") { // a quick search before the slow backward one
		return hs
	}
	b := strings.LastIndex(c, "-----BEGIN")
	header := strings.TrimRight(c[b:lineEnd(c, b)], " \t\r")
	if !strings.HasSuffix(header, "-----") || !pemOpen(header, false) {
		return hs
	}
	body := strings.Split(c[b+len(header):], "\n")[1:]
	for i, line := range body {
		if end := strings.Index(line, "-----END"); end >= 0 {
			// An END line closes the block (gitleaks' rule has it) unless
			// it is the last line and still being typed.
			if i < len(body)-1 || strings.HasSuffix(strings.TrimSpace(line), "-----") {
				return hs
			}
			line = line[:end]
		}
		if !keyBody(line) {
			return hs
		}
	}
	return append(hs, hit{rule: privateKeyRuleID, secret: strings.TrimRight(c[b:], " \t\r\n")})
}

// keyBody reports whether line can be part of a private key's body:
// base64, an armour header (Version: …), or blank.
func keyBody(line string) bool {
	const alnum = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
	line = strings.TrimSpace(line)
	if name, _, ok := strings.Cut(line, ": "); ok && name != "" && strings.Trim(name, alnum+"-") == "" {
		return true
	}
	return strings.Trim(line, alnum+"+/=") == ""
}

// keyBefore returns the start of the key before the operator at s[i], or
// -1 when the word before it, after an optional quote and blanks, does not
// end in a credential word: the key of a match of assignRe or xmlRe ends
// so.
func keyBefore(s string, i int) int {
	for i > 0 && (s[i-1] == ' ' || s[i-1] == '\t') {
		i--
	}
	if i > 0 && (s[i-1] == '"' || s[i-1] == '\'') {
		i--
	}
	end := i
	for i > 0 && ('a' <= s[i-1]|0x20 && s[i-1]|0x20 <= 'z') {
		i--
	}
	w := s[i:end]
	if w == "" || strings.IndexByte("dsntlhy", w[len(w)-1]|0x20) < 0 {
		return -1 // not the last letter of a credential word
	}
	for _, cw := range credentialWords {
		if len(w) >= len(cw) && strings.EqualFold(w[len(w)-len(cw):], cw) {
			return wordStart(s, end, "_.-")
		}
	}
	return -1
}

// wordStart returns where the run of letters, digits and the bytes of
// extra that ends at s[i] starts.
func wordStart(s string, i int, extra string) int {
	for i > 0 {
		c := s[i-1]
		if !('a' <= c|0x20 && c|0x20 <= 'z' || '0' <= c && c <= '9' || strings.IndexByte(extra, c) >= 0) {
			break
		}
		i--
	}
	return i
}

// lineEnd returns the end of the line that holds s[i].
func lineEnd(s string, i int) int {
	if end := strings.IndexByte(s[i:], '\n'); end >= 0 {
		return i + end
	}
	return len(s)
}

// sortedSet sorts xs and removes repeats.
func sortedSet(xs []int) []int {
	slices.Sort(xs)
	return slices.Compact(xs)
}

// assignHit appends the value assigned to the key at the start of s, the
// rest of its line; xml says that an XML tag opens before it. A key that is
// the flag -u or --user (curl, wget) is followed by user:password.
func assignHit(hs []hit, s string, xml bool) []hit {
	if m := userFlagRe.FindStringIndex(s); m != nil {
		if v := valueAt(s[m[1]:]); credential(v) {
			hs = addHit(hs, AssignRuleID, s[:m[1]+v.at], v.text)
		}
		return hs
	}
	if xml {
		if m := xmlRe.FindStringSubmatchIndex("<" + s); m != nil {
			v := value{text: s[m[4]-1 : m[5]-1], quote: '>', closed: true}
			if credential(v) {
				hs = addHit(hs, AssignRuleID, s[:m[4]-1], v.text)
			}
		}
		return hs
	}
	if m := assignRe.FindStringIndex(s); m != nil {
		if v := valueAt(s[m[1]:]); credential(v) {
			hs = addHit(hs, AssignRuleID, s[:m[1]+v.at], v.text)
		}
	}
	return hs
}

// urlHit appends the password of the URL at the start of s, the rest of
// its line.
func urlHit(hs []hit, s string) []hit {
	if m := urlRe.FindStringSubmatchIndex(s); m != nil {
		v := s[m[2]:m[3]]
		if template(v) || repeated(v) {
			return hs // $PW, %s, ***
		}
		return addHit(hs, URLRuleID, s[:m[2]], v)
	}
	// A password being typed: no '@' yet. Then scheme://host:port looks
	// the same, so the value must be a credential, not a port.
	if m := openURLRe.FindStringSubmatchIndex(s); m != nil {
		if v := s[m[2]:m[3]]; credential(value{text: v}) { // it ends its line
			return addHit(hs, URLRuleID, s[:m[2]], v)
		}
	}
	return hs
}

// addHit appends the hit of secret v located by the text before it, and,
// when v is long and not a plain word, the hit that replaces it wherever
// it occurs.
func addHit(hs []hit, rule, before, v string) []hit {
	hs = append(hs, hit{rule: rule, secret: v, before: before})
	if len(v) >= wholeValue && (!isName(v) || random(v)) {
		hs = append(hs, hit{rule: rule, secret: v})
	}
	return hs
}

// value is an assigned value as valueAt reads it.
type value struct {
	at     int    // its offset after the operator
	text   string // the value, without quotes
	quote  byte   // its opening quote; 0 when bare
	closed bool   // whether its closing quote was found
	rest   string // what follows it on its line
}

// valueAt reads the value at the start of s: a quoted string, whose
// closing quote may be missing at the end of the line (as while it is
// typed), or a bare run up to whitespace, a quote, ';', ',' or '\'. An
// Authorization scheme (Basic, Bearer, Token) before it is skipped.
func valueAt(s string) value {
	var v value
	if s != "" && strings.IndexByte("\"'`", s[0]) >= 0 {
		v.quote, v.at = s[0], 1
	}
	for _, scheme := range []string{"basic ", "bearer ", "token "} {
		if rest := s[v.at:]; len(rest) > len(scheme) && strings.EqualFold(rest[:len(scheme)], scheme) {
			v.at += len(scheme)
			for v.at < len(s) && s[v.at] == ' ' {
				v.at++
			}
			break
		}
	}
	rest := s[v.at:]
	var end int
	if v.quote == 0 {
		end = strings.IndexAny(rest, " \t\r\"'`;,\\")
	} else {
		end = strings.IndexByte(rest, v.quote)
		v.closed = end >= 0
	}
	if end < 0 {
		end = len(rest)
	}
	v.text, v.rest = strings.TrimRight(rest[:end], "\r"), rest[end:]
	if v.closed {
		v.rest = v.rest[1:]
	}
	return v
}

// credential reports whether v, assigned to a credential key, is a literal
// credential rather than code, a name or a placeholder.
func credential(v value) bool {
	s := v.text
	switch {
	case len(s) < minValue, reference(s), repeated(s):
		return false
	case isName(s) && !random(s):
		return false // a name or a word: str, None, Password
	case strings.ContainsAny(s, " \t"):
		return false // a label or a sentence
	case path.MatchString(s), strings.Contains(s, "://"):
		return false // a path or a URL (urlRe finds a URL's password)
	case v.closed:
		return true
	}
	// A bare value, or a quoted one that does not close on its line, may be
	// code.
	switch {
	case strings.ContainsAny(s, "()[]{}<>"):
		return false // a call, an index, a comparison
	case strings.IndexByte("&*!", s[0]) >= 0 && (identifier.MatchString(s[1:]) || attributePath.MatchString(s[1:])):
		return false // an operator before a name: &pw, *pw, !ok
	case attributePath.MatchString(s), number.MatchString(s):
		return false
	case identifier.MatchString(s):
		// hunter22 ends its line in a config file; password16 in code is
		// followed by more code. A random one is a key wherever it is.
		return endsLine(v.rest) || random(s)
	}
	return true
}

// endsLine reports whether rest, what follows a value on its line, is
// blank or a comment.
func endsLine(rest string) bool {
	rest = strings.TrimSpace(rest)
	return rest == "" || strings.HasPrefix(rest, "#") || strings.HasPrefix(rest, "//")
}

// random reports whether s looks drawn at random rather than named: 16
// characters or more, with upper- and lower-case letters (two or more of
// each) and digits in two places or more, or with runs of lower-case
// letters (of upper-case ones when it has none) shorter than 3 on average.
// The words of a name make longer runs and keep their digits together
// (testRSA2048PrivateKey: test, rivate, ey; 2048), a random mix of cases
// and digits cuts them short (kQz4XbWmP7aLrTnY: k, z, b, m, a, r, n; 4, 7).
func random(s string) bool {
	if len(s) < 16 {
		return false
	}
	var u, l, digitRuns int
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case '0' <= c && c <= '9':
			if i == 0 || s[i-1] < '0' || s[i-1] > '9' {
				digitRuns++
			}
		case 'A' <= c && c <= 'Z':
			u++
		case 'a' <= c && c <= 'z':
			l++
		}
	}
	if digitRuns >= 2 && u >= 2 && l >= 2 {
		return true
	}
	lo, hi := byte('a'), byte('z')
	if l == 0 {
		lo, hi = 'A', 'Z'
	}
	letters, runs := 0, 0
	for i := 0; i < len(s); i++ {
		if lo <= s[i] && s[i] <= hi {
			letters++
			if i == 0 || s[i-1] < lo || s[i-1] > hi {
				runs++
			}
		}
	}
	return runs > 0 && letters < 3*runs
}

// Bare values that are code: an attribute (self.token2, cfg.db.pwd), a
// number (0x000C, 1.5; a run of digits is a PIN or a numeric password, and
// a long hexadecimal one a key), an identifier (password16). A path has
// lower-case parts (/run/secrets/db, ~/.pgpass), so that a base64 key that
// starts with '/' is not taken for one.
var (
	path          = regexp.MustCompile(`^(?:~|\.{1,2})?(?:/[a-z0-9_.-]+)+/?$`)
	attributePath = regexp.MustCompile(`^[A-Za-z_]\w*(?:\.\w+)+$`)
	number        = regexp.MustCompile(`^[-+]?(?:0[xX][0-9a-fA-F_]{1,16}|[0-9]+\.[0-9]+)$`)
	identifier    = regexp.MustCompile(`^[A-Za-z_]\w*$`)
)

// isName reports whether v holds only letters, '_', '.', '-' and ':': a
// name (str, None, process.env.API_KEY, Password), never a credential.
func isName(v string) bool {
	for i := 0; i < len(v); i++ {
		c := v[i] | 0x20
		if !(c >= 'a' && c <= 'z' || strings.IndexByte("_.-:", v[i]) >= 0) {
			return false
		}
	}
	return true
}

// reference reports whether v refers to a value rather than being one: a
// variable or template (template), an angle-bracketed placeholder
// (<password>, and the placeholders of this package), an elided one
// (c4m_…, sk-...) or an escape sequence (\u3299).
func reference(v string) bool {
	return template(v) || v[0] == '<' || v[0] == '\\' || strings.Contains(v, "…") || strings.HasSuffix(v, "...")
}

// template reports whether v is a variable or a template: $PW, ${PW},
// {{ pw }}, #{pw}, %s, %(pw)s. A '%' before a hex digit is a
// percent-encoded character of a password (%40 is '@').
func template(v string) bool {
	return v == "" || v[0] == '$' || strings.Contains(v, "${") || strings.Contains(v, "{{") || strings.Contains(v, "#{") ||
		len(v) > 1 && v[0] == '%' && !strings.ContainsRune("0123456789abcdefABCDEF", rune(v[1]))
}

// repeated reports whether v is one character repeated (********, xxxxxx).
func repeated(v string) bool {
	return v != "" && strings.Count(v, v[:1]) == len(v)
}
