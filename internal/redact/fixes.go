package redact

import (
	"slices"

	"github.com/zricethezav/gitleaks/v8/config"
	"github.com/zricethezav/gitleaks/v8/regexp"
)

// allowlistFixes replaces allowlist patterns of gitleaks' default rules
// that also match real secrets, and so let them through:
//
//   - the global `(?i)^true|false|null$` lacks a group: it allows every
//     secret that contains "false", starts with "true" or ends with "null";
//   - vault-service-token's `s\.[A-Za-z]{24}`, meant for the legacy
//     "s." tokens made of letters only, is not anchored: it also allows
//     the hvs. tokens whose 24 characters after "s." are letters (about
//     one in 140).
//
// The secrets corpus of the server found the second.
var allowlistFixes = map[string]string{
	`(?i)^true|false|null$`: `(?i)^(?:true|false|null)$`,
	`s\.[A-Za-z]{24}`:       `^s\.[A-Za-z]{24}$`,
}

// fixAllowlists returns as with the patterns of allowlistFixes replaced,
// in new allowlists: the parsed default rules are shared and stay as they
// are.
func fixAllowlists(as []*config.Allowlist) ([]*config.Allowlist, error) {
	out := slices.Clone(as)
	for i, a := range as {
		regexes := slices.Clone(a.Regexes)
		fixed := false
		for j, re := range regexes {
			if f, ok := allowlistFixes[re.String()]; ok {
				regexes[j], fixed = regexp.MustCompile(f), true
			}
		}
		if !fixed {
			continue
		}
		c := &config.Allowlist{Description: a.Description, MatchCondition: a.MatchCondition, Commits: a.Commits,
			Paths: a.Paths, RegexTarget: a.RegexTarget, Regexes: regexes, StopWords: a.StopWords}
		if err := c.Validate(); err != nil {
			return nil, err
		}
		out[i] = c
	}
	return out, nil
}
