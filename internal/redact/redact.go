// Package redact removes credentials from editor text before it reaches a
// model, the database or a log.
//
// A Redactor wraps a gitleaks v8 detector built once from gitleaks' embedded
// default rules. It is safe for concurrent use; build one at start-up and share
// it. Every finding is replaced by a deterministic placeholder such as
// "<redacted:aws-access-token>", so the same input always gives the same output
// and the engine's KV prefix cache keeps matching between keystrokes.
//
// Rules of the package:
//
//   - A "gitleaks:allow" comment in user text never switches redaction off.
//   - No decoding passes (base64, hex, percent): a decoded secret cannot be
//     located in the original text, so it could not be replaced.
//   - No file path is given to gitleaks: its path allowlists (vendor/,
//     node_modules/, go.sum, …) would turn redaction off for such files.
//   - Whole tokens are replaced: the secret capture group of gitleaks' rules is
//     the whole token (every GitHub prefix, the three parts of a JWT, the whole
//     PEM private-key block from BEGIN to END), never a prefix of it.
//     Overlapping findings are merged and replaced as one span.
//   - Findings report rule ids and counts only, never the secret or its hash.
//   - Cancellation fails closed: when ctx ends before the scan finishes, the
//     whole text is replaced by Incomplete.
//
// The generic-api-key rule is off by default (Options.IncludeGeneric): its
// keywords (key, token, auth, secret, …) occur in nearly every source file,
// its regular expression has no literal to start from, so it dominates the
// cost (about half of the scan time on Go source), and it misfires on
// ordinary code. The secrets that must always be caught (AWS keys, GitHub
// tokens of every kind, private keys, JWTs, Slack tokens and the other
// 200-odd provider formats) are covered by the specific rules; credentials
// without a format (`password = "hunter2"`, postgres://app:hunter2@db) by
// the two rules of this package in assign.go, which replace the value only
// and leave code such as `password = getPassword()` alone.
package redact

import (
	"cmp"
	"context"
	"crypto/sha256"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"

	lru "github.com/hashicorp/golang-lru/v2"
	"github.com/rs/zerolog"
	"github.com/spf13/viper"
	"github.com/zricethezav/gitleaks/v8/config"
	"github.com/zricethezav/gitleaks/v8/detect"
	"github.com/zricethezav/gitleaks/v8/logging"
	"github.com/zricethezav/gitleaks/v8/regexp"
	"github.com/zricethezav/gitleaks/v8/report"
)

// GenericRuleID is the gitleaks rule that Options.IncludeGeneric switches on.
const GenericRuleID = "generic-api-key"

// IncompleteRuleID is the rule id reported when a scan was cancelled.
const IncompleteRuleID = "redact-incomplete"

// Incomplete replaces the whole text when the scan was cancelled before it
// finished: an unfinished scan must never pass for a clean one.
const Incomplete = "<redacted:" + IncompleteRuleID + ">"

// DefaultCacheSize is the number of entries kept by Cached when
// Options.CacheSize is zero.
const DefaultCacheSize = 1024

// chunkCacheFactor sizes the chunk cache against the whole-result cache: at
// about a kilobyte per chunk, the default covers 16 MiB of recent text.
const chunkCacheFactor = 16

// RegexpEngine names the regular-expression back-end gitleaks was built with:
// "stdlib", or "github.com/wasilibs/go-re2" under the gore2regex build tag.
const RegexpEngine = regexp.Version

// Options configures a Redactor. The zero value is the recommended setting.
type Options struct {
	// IncludeGeneric turns on gitleaks' generic-api-key rule (default false;
	// see the package documentation for why).
	IncludeGeneric bool
	// CacheSize is the number of whole results Cached keeps, keyed by the
	// sha256 of the input; Text keeps chunkCacheFactor times as many chunk
	// results (a few dozen bytes each, the text itself is not kept). Zero
	// means DefaultCacheSize; negative disables both caches, and every call
	// scans every byte.
	CacheSize int
}

// Finding says that a rule matched. It never carries the secret.
type Finding struct {
	// RuleID is the gitleaks rule id, e.g. "github-pat".
	RuleID string
	// Count is the number of matches of the rule in the text.
	Count int
}

// Redactor replaces secrets in text. It is safe for concurrent use.
type Redactor struct {
	d      *detect.Detector
	rules  []string
	chunks *lru.Cache[[sha256.Size]byte, []hit]        // Text: secrets per chunk
	whole  *lru.Cache[[sha256.Size]byte, cachedResult] // Cached: whole results
	// observe is Observe's function; nil when none.
	observe atomic.Pointer[func([]Finding)]
}

// hit is one secret found by one rule. It never leaves the package. When
// before is set, the secret is replaced only where before precedes it (the
// rules of assign.go); otherwise wherever it occurs.
type hit struct{ rule, secret, before string }

type cachedResult struct {
	out      string // redacted text; empty when clean
	clean    bool   // no findings: the input is returned as is
	findings []Finding
}

// defaultConfig parses gitleaks' embedded rules once per process. It uses a
// private viper instance, never the global one, so it cannot race with other
// viper users. Silencing gitleaks' package-global logger happens here too:
// its trace and debug lines carry the secrets.
var defaultConfig = sync.OnceValues(func() (config.Config, error) {
	logging.Logger = zerolog.Nop()
	v := viper.New()
	v.SetConfigType("toml")
	if err := v.ReadConfig(strings.NewReader(config.DefaultConfig)); err != nil {
		return config.Config{}, fmt.Errorf("read gitleaks default rules: %w", err)
	}
	var vc config.ViperConfig
	if err := v.Unmarshal(&vc); err != nil {
		return config.Config{}, fmt.Errorf("decode gitleaks default rules: %w", err)
	}
	cfg, err := vc.Translate()
	if err != nil {
		return config.Config{}, fmt.Errorf("translate gitleaks default rules: %w", err)
	}
	return cfg, nil
})

// New builds a Redactor from gitleaks' default rules. The first call in a
// process parses and compiles the rules (tens of milliseconds); build one
// Redactor at start-up and share it.
func New(opts Options) (*Redactor, error) {
	base, err := defaultConfig()
	if err != nil {
		return nil, err
	}
	cfg := base
	cfg.Rules = make(map[string]config.Rule, len(base.Rules))
	cfg.Keywords = make(map[string]struct{}, len(base.Keywords))
	if cfg.Allowlists, err = fixAllowlists(base.Allowlists); err != nil {
		return nil, fmt.Errorf("redact: %w", err)
	}
	var ids []string
	for id, rule := range base.Rules {
		if id == GenericRuleID && !opts.IncludeGeneric {
			continue
		}
		if rule.Allowlists, err = fixAllowlists(rule.Allowlists); err != nil {
			return nil, fmt.Errorf("redact: rule %s: %w", id, err)
		}
		cfg.Rules[id] = rule
		for _, k := range rule.Keywords {
			cfg.Keywords[strings.ToLower(k)] = struct{}{}
		}
		ids = append(ids, id)
	}
	slices.Sort(ids)
	cfg.OrderedRules = ids

	d := detect.NewDetector(cfg)
	d.IgnoreGitleaksAllow = true // a comment in user code must not disable redaction
	d.MaxDecodeDepth = 0         // decoded findings cannot be located in the original text
	d.Redact = 0                 // findings stay exact so their secrets can be found

	rules := append(slices.Clone(ids), AssignRuleID, URLRuleID)
	slices.Sort(rules)
	r := &Redactor{d: d, rules: rules}
	size := opts.CacheSize
	if size == 0 {
		size = DefaultCacheSize
	}
	if size > 0 {
		if r.chunks, err = lru.New[[sha256.Size]byte, []hit](chunkCacheFactor * size); err != nil {
			return nil, fmt.Errorf("redact chunk cache: %w", err)
		}
		if r.whole, err = lru.New[[sha256.Size]byte, cachedResult](size); err != nil {
			return nil, fmt.Errorf("redact cache: %w", err)
		}
	}
	return r, nil
}

// Rules returns the ids of the rules in use, sorted.
func (r *Redactor) Rules() []string { return slices.Clone(r.rules) }

// Observe makes every Text and Cached call that replaces something report
// its findings to f (nil stops it), in the caller's goroutine, so f must be
// quick and must not keep the slice. A call that finds nothing costs
// nothing more. A Redactor has one such function: a later Observe replaces
// it.
func (r *Redactor) Observe(f func([]Finding)) {
	if f == nil {
		r.observe.Store(nil)
		return
	}
	r.observe.Store(&f)
}

// report hands findings to Observe's function.
func (r *Redactor) report(findings []Finding) {
	if len(findings) == 0 {
		return
	}
	if f := r.observe.Load(); f != nil {
		(*f)(findings)
	}
}

// Placeholder is the text that replaces a secret found by ruleID.
func Placeholder(ruleID string) string { return "<redacted:" + ruleID + ">" }

// Text returns s with every secret replaced by Placeholder(rule), and per rule
// the number of placeholders it put in, sorted by rule id. When nothing
// matches it returns s itself and nil. When ctx ends before the scan finishes
// it returns Incomplete.
//
// The text is scanned in chunks of about a kilobyte, cut at content-defined
// line boundaries, and the secrets of each chunk are cached by its sha256: as
// a user types, only the chunk around the cursor is scanned again, and a
// window that slides over a file re-scans only its edges. Chunking never
// changes the result for secrets on one line, nor for private-key blocks
// (never cut); see chunkSpans for the one-line overlap between chunks.
func (r *Redactor) Text(ctx context.Context, s string) (string, []Finding) {
	out, findings, ok := r.text(ctx, s)
	if !ok {
		out, findings = Incomplete, []Finding{{RuleID: IncompleteRuleID, Count: 1}}
	}
	r.report(findings)
	return out, findings
}

// Cached is Text with a cache of whole results keyed by the sha256 of s, for
// text that repeats unchanged between requests (context files). A hit costs
// one hash of s. Cancelled scans are not cached.
func (r *Redactor) Cached(ctx context.Context, s string) (string, []Finding) {
	if r.whole == nil || s == "" {
		return r.Text(ctx, s)
	}
	key := sha256.Sum256([]byte(s))
	if c, ok := r.whole.Get(key); ok {
		if c.clean {
			return s, nil
		}
		r.report(c.findings)
		return c.out, slices.Clone(c.findings)
	}
	out, findings, ok := r.text(ctx, s)
	if !ok {
		findings = []Finding{{RuleID: IncompleteRuleID, Count: 1}}
		r.report(findings)
		return Incomplete, findings
	}
	r.report(findings)
	c := cachedResult{clean: len(findings) == 0, findings: slices.Clone(findings)}
	if !c.clean {
		c.out = out
	}
	r.whole.Add(key, c)
	return out, findings
}

// text scans s chunk by chunk and applies the secrets found. ok is false when
// ctx ended before the scan finished.
func (r *Redactor) text(ctx context.Context, s string) (out string, findings []Finding, ok bool) {
	if ctx.Err() != nil {
		return "", nil, false
	}
	if s == "" {
		return s, nil, true
	}
	var hits []hit
	for _, c := range chunkSpans(s) {
		hs, ok := r.chunk(ctx, s[c[0]:c[1]])
		if !ok {
			return "", nil, false
		}
		hits = append(hits, hs...)
	}
	if len(hits) == 0 {
		return s, nil, true
	}
	out, findings = apply(s, hits)
	return out, findings, true
}

// chunk returns the secrets in c, from the cache when it has them.
func (r *Redactor) chunk(ctx context.Context, c string) ([]hit, bool) {
	var key [sha256.Size]byte
	if r.chunks != nil {
		key = sha256.Sum256([]byte(c))
		if hs, ok := r.chunks.Get(key); ok {
			return hs, true
		}
	}
	fs := r.d.DetectContext(ctx, detect.Fragment{Raw: c})
	// DetectContext stops between rules when ctx ends and returns what it has
	// so far; that partial result must not pass for a complete one.
	if ctx.Err() != nil {
		return nil, false
	}
	hs := append(hits(fs), contextHits(c)...)
	if r.chunks != nil {
		r.chunks.Add(key, hs)
	}
	return hs, true
}

// hits extracts the distinct (rule, secret) pairs of gitleaks findings.
func hits(fs []report.Finding) []hit {
	if len(fs) == 0 {
		return nil
	}
	hs := make([]hit, 0, len(fs))
	for _, f := range fs {
		h := hit{rule: f.RuleID, secret: f.Secret}
		if h.secret == "" {
			h.secret = f.Match
		}
		if h.secret != "" && !slices.Contains(hs, h) {
			hs = append(hs, h)
		}
	}
	return hs
}

// span is one occurrence of a secret in the input.
type span struct {
	start, end int
	rule       string
}

// apply replaces every occurrence of every secret in one pass and counts the
// placeholders per rule. Overlapping occurrences are merged into one span,
// labelled with the rule of its longest member (a specific rule wins a tie
// against the generic one, then the smaller rule id), so the result does not
// depend on the order of hs.
func apply(s string, hs []hit) (string, []Finding) {
	var spans []span
	seen := make(map[hit]struct{}, len(hs))
	for _, h := range hs {
		if _, dup := seen[h]; dup || h.secret == "" {
			continue
		}
		seen[h] = struct{}{}
		needle := h.before + h.secret
		for i := 0; ; {
			j := strings.Index(s[i:], needle)
			if j < 0 {
				break
			}
			start := i + j + len(h.before)
			spans = append(spans, span{start, start + len(h.secret), h.rule})
			i = i + j + 1
		}
	}
	if len(spans) == 0 {
		return s, nil
	}
	slices.SortFunc(spans, func(a, b span) int {
		return cmp.Or(cmp.Compare(a.start, b.start), cmp.Compare(b.end, a.end), cmp.Compare(a.rule, b.rule))
	})

	counts := make(map[string]int)
	var b strings.Builder
	b.Grow(len(s))
	last := 0
	for i := 0; i < len(spans); {
		cur := spans[i]
		best := cur
		for i++; i < len(spans) && spans[i].start < cur.end; i++ {
			if better(spans[i], best) {
				best = spans[i]
			}
			cur.end = max(cur.end, spans[i].end)
		}
		b.WriteString(s[last:cur.start])
		b.WriteString(Placeholder(best.rule))
		counts[best.rule]++
		last = cur.end
	}
	b.WriteString(s[last:])

	findings := make([]Finding, 0, len(counts))
	for id, n := range counts {
		findings = append(findings, Finding{RuleID: id, Count: n})
	}
	slices.SortFunc(findings, func(a, b Finding) int { return cmp.Compare(a.RuleID, b.RuleID) })
	return b.String(), findings
}

// better reports whether span a should label a merged span instead of b.
func better(a, b span) bool {
	la, lb := a.end-a.start, b.end-b.start
	if la != lb {
		return la > lb
	}
	ga, gb := a.rule == GenericRuleID, b.rule == GenericRuleID
	if ga != gb {
		return gb
	}
	return a.rule < b.rule
}
