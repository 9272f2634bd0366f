package bpe

import (
	"fmt"
	"math/rand/v2"
	"strings"
)

// FallbackCorpus returns about n bytes of deterministic Go-like text made
// from keywords, common identifiers and punctuation. It stands in for
// GoCorpus on machines without a Go source tree (a release container), so a
// vocabulary can still be trained; its merges are cruder than ones learned
// from real code.
func FallbackCorpus(n int) [][]byte {
	idents := []string{"err", "ctx", "req", "resp", "buf", "n", "i", "s", "v", "ok", "name", "data",
		"value", "key", "result", "config", "server", "client", "model", "token", "tokens", "prompt",
		"Handler", "Writer", "Reader", "String", "Error", "Context", "Request", "Response", "New", "Get",
		"Set", "Len", "Close", "Read", "Write", "Printf", "Println", "Sprintf", "Errorf", "append", "len",
		"make", "fmt", "strings", "errors", "context", "http", "json", "time", "sync", "bytes", "os"}
	types := []string{"int", "string", "error", "bool", "[]byte", "float64", "int64", "any", "*Server", "map[string]int"}
	rng := rand.New(rand.NewPCG(0x5eed, 0xc0de))
	syllables := []string{"ba", "ce", "di", "fo", "gu", "ka", "le", "mi", "no", "pu", "ra", "se", "ti", "vo", "zu",
		"str", "ent", "ion", "er", "al", "ing", "ex", "con", "pre", "ab", "ist", "ous", "ect", "ure", "ly"}
	// Identifiers are either common ones or random compounds, so the text
	// keeps yielding new pairs to merge.
	pick := func(xs []string) string {
		if rng.IntN(3) > 0 || len(xs) != len(idents) {
			return xs[rng.IntN(len(xs))]
		}
		var b strings.Builder
		for k := range 1 + rng.IntN(3) {
			syl := syllables[rng.IntN(len(syllables))]
			if k > 0 && rng.IntN(2) == 0 {
				syl = strings.ToUpper(syl[:1]) + syl[1:]
			}
			b.WriteString(syl)
		}
		return b.String()
	}
	var sb strings.Builder
	for sb.Len() < n {
		fmt.Fprintf(&sb, "// %s returns the %s of %s.\n", pick(idents), pick(idents), pick(idents))
		fmt.Fprintf(&sb, "func (%s *%s) %s(%s %s, %s %s) (%s, error) {\n",
			pick(idents), pick(idents), pick(idents), pick(idents), pick(types), pick(idents), pick(types), pick(types))
		for range 2 + rng.IntN(6) {
			switch rng.IntN(5) {
			case 0:
				fmt.Fprintf(&sb, "\t%s := %s.%s(%s, %d)\n", pick(idents), pick(idents), pick(idents), pick(idents), rng.IntN(100))
			case 1:
				fmt.Fprintf(&sb, "\tif err != nil {\n\t\treturn nil, fmt.Errorf(\"%s %%q: %%w\", %s, err)\n\t}\n", pick(idents), pick(idents))
			case 2:
				fmt.Fprintf(&sb, "\tfor i := 0; i < len(%s); i++ {\n\t\t%s = append(%s, %s[i])\n\t}\n", pick(idents), pick(idents), pick(idents), pick(idents))
			case 3:
				fmt.Fprintf(&sb, "\t%s.%s = %s{%s: %q}\n", pick(idents), pick(idents), pick(types), pick(idents), pick(idents))
			default:
				fmt.Fprintf(&sb, "\treturn %s, nil\n", pick(idents))
			}
		}
		sb.WriteString("}\n\n")
	}
	return [][]byte{[]byte(sb.String())}
}
