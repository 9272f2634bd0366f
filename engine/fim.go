package engine

import (
	"bytes"
	"fmt"
	"path"
	"strings"
)

// Family is a model family with its own fill-in-the-middle prompt layout.
type Family string

// Families the engine lays prompts out for.
const (
	FamilyNone      Family = ""               // no FIM tokens: raw prompts only
	FamilyQwen      Family = "qwen2.5-coder"  // PSM with <|repo_name|> / <|file_sep|>
	FamilyStarCoder Family = "starcoder2"     // PSM with <repo_name> / <file_sep>, path inside <fim_prefix>
	FamilyDeepSeek  Family = "deepseek-coder" // PSM, context as commented files
	FamilyCodeLlama Family = "codellama"      // PSM, context as commented files
	FamilyCodestral Family = "codestral"      // SPM: [SUFFIX] suffix [PREFIX] prefix
	FamilyGeneric   Family = "generic-fim"    // unknown model with FIM tokens: PSM
)

// DetectFamily picks the prompt layout from a model's metadata and
// vocabulary. A model without prefix/suffix tokens is FamilyNone.
func DetectFamily(info ModelInfo, sp SpecialTokens) Family {
	if sp.FIMPre == NoToken || sp.FIMSuf == NoToken {
		return FamilyNone
	}
	name := strings.ToLower(info.Name + " " + info.Description + " " + info.Path)
	arch := strings.ToLower(info.Arch)
	switch {
	case strings.Contains(name, "codestral"):
		return FamilyCodestral
	case strings.Contains(name, "codellama") || strings.Contains(name, "code llama") || strings.Contains(name, "code-llama"):
		return FamilyCodeLlama
	case strings.Contains(name, "deepseek"):
		return FamilyDeepSeek
	case arch == "starcoder2" || strings.Contains(name, "starcoder2"):
		return FamilyStarCoder
	case arch == "qwen2" || strings.Contains(name, "qwen"):
		return FamilyQwen
	}
	if sp.FIMMid == NoToken {
		return FamilyCodestral // suffix-first layouts have no middle token
	}
	if sp.FIMRep != NoToken && sp.FIMSep != NoToken {
		return FamilyQwen
	}
	return FamilyGeneric
}

// Tokenizer is the part of a Model the prompt layout needs. Model satisfies
// it; it must be safe for concurrent use.
type Tokenizer interface {
	Tokenize(text string, addSpecial, parseSpecial bool) ([]Token, error)
	Piece(t Token, special bool) []byte
}

// Prompt is a laid-out, tokenized prompt.
type Prompt struct {
	Tokens    []Token
	Truncated bool // something was dropped to fit the budget
	// extras and prefix are the parts a time budget may drop (budget.go):
	// each extra chunk's tokens, least relevant (first) first, and the
	// prefix's tokens before the middle block. Zero for raw prompts.
	extras []span
	prefix span
}

// span is the tokens [start, end) of a prompt.
type span struct{ start, end int }

// SplitCursorLine splits text before the cursor into whole lines and the
// cursor line's start.
func SplitCursorLine(prefix string) (lines, cursorLine string) {
	i := strings.LastIndexByte(prefix, '\n')
	return prefix[:i+1], prefix[i+1:]
}

// Middle blocks. Text after the FIM middle token is the start of the
// infill, which the model continues, so what the user typed since some
// point can go there instead of before the suffix: a keystroke then only
// appends to the prompt, and the suffix stays in the KV cache. Only the
// cursor line would be too little: each new line would move into the
// prefix and push the whole suffix to new positions, where it must be
// evaluated again (about 250 tokens per new line with a 768-byte suffix).
// So the middle holds the lines since the last block start. A complete line
// starts a block when its hash is a multiple of blockEvery: a property of
// the line's text alone, so block starts stay where they are while the
// user types below them and while the editor window's start moves, and the
// suffix is evaluated again about once per blockEvery new lines.
const (
	blockEvery    = 8  // on average one complete line in blockEvery starts a block
	blockMaxLines = 32 // the most complete lines a middle block holds
)

// SplitCursorBlock splits text before the cursor into the part before the
// FIM suffix and the middle block: the complete lines since the last block
// start, then the cursor line.
// With no block start among the last blockMaxLines complete lines, the
// middle is the cursor line alone.
func SplitCursorBlock(prefix string) (before, middle string) {
	cursor := strings.LastIndexByte(prefix, '\n') + 1 // the cursor line's start
	cut := cursor
	for range blockMaxLines {
		if cut == 0 {
			break
		}
		start := strings.LastIndexByte(prefix[:cut-1], '\n') + 1
		if lineHash(prefix[start:cut])%blockEvery == 0 {
			return prefix[:start], prefix[start:]
		}
		cut = start
	}
	return prefix[:cursor], prefix[cursor:]
}

// lineHash is FNV-1a of a line.
func lineHash(s string) uint32 {
	h := uint32(2166136261)
	for i := 0; i < len(s); i++ {
		h ^= uint32(s[i])
		h *= 16777619
	}
	return h
}

// PromptSplit caps, in tokens, the parts of a FIM prompt: Extra the extra
// context (project files, retrieved chunks), Prefix the text before the
// cursor (the middle block and cursor line included), Suffix the text after
// it. 0 gives a part no cap of its own. The prompt's token budget applies
// after the caps, as it does without them.
type PromptSplit struct {
	Extra, Prefix, Suffix int
}

// BuildPrompt lays out req for family fam and tokenizes it within budget
// tokens. The layout puts stable context first (BOS, repository name, extra
// files, the current file's path) so that the KV cache keeps it across
// requests. Text is tokenized without special-token parsing, so user text can
// never produce a control token; control tokens are inserted by id.
//
// The caps of split come first: extra chunks are dropped from the front
// until they fit theirs; the prefix loses whole lines from its top, on the
// stepped cut described below, until it and the middle block fit theirs
// (the middle block loses lines from its front only when it alone is over
// the cap); the suffix loses whole lines from its end.
//
// When the prompt then exceeds the budget, extra chunks are dropped from the
// front until they use at most what the local context leaves (and at most
// half the budget when the local context needs more); then the far end of
// the prefix and the end of the suffix are cut on line boundaries, keeping
// about 3/4 prefix and 1/4 suffix. The prefix cut moves in steps of budget/16 tokens so
// that it stays put while the user types. BuildPrompt runs in the caller's
// goroutine.
func BuildPrompt(tk Tokenizer, sp SpecialTokens, fam Family, req *Request, budget int, split PromptSplit) (*Prompt, error) {
	if budget <= 0 {
		return nil, ErrPromptTooLong
	}
	if req.Raw {
		return buildRaw(tk, sp, req.Prefix, budget)
	}
	if fam == FamilyNone {
		return nil, ErrNoFIM
	}
	prefix, middle := req.Prefix, req.Middle
	// The middle block's complete lines and its cursor line are tokenized
	// apart, so that typing re-tokenizes only the cursor line (TokenCache).
	var midLines string
	if middle == "" && !req.KeepCursorLine && fam != FamilyCodestral {
		prefix, middle = SplitCursorBlock(prefix)
		midLines, middle = SplitCursorLine(middle)
	}
	tok := func(s string) ([]Token, error) {
		if s == "" {
			return nil, nil
		}
		t, err := tk.Tokenize(s, false, false)
		if err != nil {
			return nil, fmt.Errorf("tokenize: %w", err)
		}
		return t, nil
	}
	pre, err := tok(prefix)
	if err != nil {
		return nil, err
	}
	suf, err := tok(req.Suffix)
	if err != nil {
		return nil, err
	}
	mid, err := tok(midLines)
	if err != nil {
		return nil, err
	}
	cursor, err := tok(middle)
	if err != nil {
		return nil, err
	}
	mid = append(mid, cursor...)

	repoTokens := (fam == FamilyQwen || fam == FamilyStarCoder) && sp.FIMRep != NoToken && sp.FIMSep != NoToken
	// head: BOS and repository name; cur: the current file's header.
	var head, cur []Token
	if sp.AddBOS && sp.BOS != NoToken {
		head = append(head, sp.BOS)
	}
	extras := make([][]Token, 0, len(req.Extra))
	for _, c := range req.Extra {
		var text string
		var ids []Token
		if repoTokens {
			ids = []Token{sp.FIMSep}
			text = c.Path + "\n" + withNewline(c.Text)
		} else {
			text = commentLine(c.Path) + withNewline(c.Text) + "\n"
		}
		t, err := tok(text)
		if err != nil {
			return nil, err
		}
		extras = append(extras, append(ids, t...))
	}
	if repoTokens && (req.RepoName != "" || req.FilePath != "" || len(extras) > 0) {
		repo := req.RepoName
		if repo == "" {
			repo = "project"
		}
		if fam == FamilyQwen {
			repo += "\n"
		}
		t, err := tok(repo)
		if err != nil {
			return nil, err
		}
		head = append(append(head, sp.FIMRep), t...)
		if fam == FamilyQwen {
			t, err := tok(req.FilePath + "\n")
			if err != nil {
				return nil, err
			}
			cur = append(append(cur, sp.FIMSep), t...)
		} else {
			cur = append(cur, sp.FIMSep)
		}
	}
	// curIn goes right after the prefix token: StarCoder2's file path, or a
	// comment naming the file for families without repo tokens.
	var curIn []Token
	switch {
	case fam == FamilyStarCoder && repoTokens:
		if curIn, err = tok(req.FilePath + "\n"); err != nil {
			return nil, err
		}
	case !repoTokens && req.FilePath != "":
		if curIn, err = tok(commentLine(req.FilePath)); err != nil {
			return nil, err
		}
	}
	markers := 3
	if sp.FIMMid == NoToken || fam == FamilyCodestral {
		markers = 2
	}
	fixed := len(head) + len(cur) + len(curIn) + markers

	// The split's caps.
	quantum := max(16, budget/16) // the prefix cut moves in steps of quantum tokens
	nExtra := 0
	for _, e := range extras {
		nExtra += len(e)
	}
	truncated := false
	if split.Extra > 0 {
		for len(extras) > 0 && nExtra > split.Extra {
			nExtra -= len(extras[0])
			extras = extras[1:]
			truncated = true
		}
	}
	if split.Prefix > 0 && len(pre)+len(mid) > split.Prefix {
		truncated = true
		if len(mid) > split.Prefix {
			mid = trimFront(tk, mid, split.Prefix, 1)
		}
		// A step of at most a quarter of the cap keeps about three
		// quarters of it or more (less the rest of the line the cut
		// moves to).
		pre = trimFront(tk, pre, split.Prefix-len(mid), min(quantum, max(1, split.Prefix/4)))
	}
	if split.Suffix > 0 && len(suf) > split.Suffix {
		truncated = true
		suf = trimBack(tk, suf, split.Suffix)
	}

	// Budget.
	local := len(pre) + len(suf) + len(mid)
	if fixed+local+nExtra > budget {
		allow := max(budget-fixed-local, (budget-fixed)/2, 0)
		for len(extras) > 0 && nExtra > allow {
			nExtra -= len(extras[0])
			extras = extras[1:]
			truncated = true
		}
	}
	avail := budget - fixed - nExtra
	if avail < 1 {
		return nil, ErrPromptTooLong
	}
	if local > avail {
		truncated = true
		if len(mid) > avail/2 {
			mid = mid[len(mid)-avail/2:]
		}
		a := avail - len(mid)
		nSuf := min(len(suf), max(a/4, a-len(pre)))
		nPre := min(len(pre), a-nSuf)
		pre = trimFront(tk, pre, nPre, quantum)
		suf = trimBack(tk, suf, nSuf)
	}

	p := &Prompt{Truncated: truncated, extras: make([]span, 0, len(extras))}
	out := make([]Token, 0, fixed+nExtra+len(pre)+len(suf)+len(mid))
	out = append(out, head...)
	addExtras := func() {
		for _, c := range extras {
			p.extras = append(p.extras, span{len(out), len(out) + len(c)})
			out = append(out, c...)
		}
	}
	addPrefix := func() {
		p.prefix = span{len(out), len(out) + len(pre)}
		out = append(out, pre...)
	}
	if fam == FamilyCodestral {
		out = append(out, sp.FIMSuf)
		out = append(out, suf...)
		out = append(out, sp.FIMPre)
		addExtras()
		out = append(out, curIn...)
		addPrefix()
		out = append(out, mid...)
		p.Tokens = out
		return p, nil
	}
	if repoTokens {
		addExtras()
		out = append(out, cur...)
		out = append(out, sp.FIMPre)
	} else {
		out = append(out, sp.FIMPre)
		addExtras()
	}
	out = append(out, curIn...)
	addPrefix()
	out = append(out, sp.FIMSuf)
	out = append(out, suf...)
	if sp.FIMMid != NoToken {
		out = append(out, sp.FIMMid)
	}
	out = append(out, mid...)
	p.Tokens = out
	return p, nil
}

func buildRaw(tk Tokenizer, sp SpecialTokens, text string, budget int) (*Prompt, error) {
	t, err := tk.Tokenize(text, true, true)
	if err != nil {
		return nil, fmt.Errorf("tokenize: %w", err)
	}
	if len(t) <= budget {
		return &Prompt{Tokens: t}, nil
	}
	keep := t[len(t)-budget:]
	if len(t) > 0 && sp.BOS != NoToken && t[0] == sp.BOS && budget > 1 {
		keep = append([]Token{sp.BOS}, t[len(t)-budget+1:]...)
	}
	return &Prompt{Tokens: keep, Truncated: true}, nil
}

// trimFront keeps at most n tokens from the end of t. The cut is rounded up
// to a multiple of q (so it moves only every q tokens as t grows at its end)
// and then moved forward to the next line start.
func trimFront(tk Tokenizer, t []Token, n, q int) []Token {
	if n >= len(t) {
		return t
	}
	if n <= 0 {
		return nil
	}
	start := len(t) - n
	start = min((start+q-1)/q*q, len(t))
	for i := start; i < len(t); i++ {
		if i > 0 && bytes.IndexByte(tk.Piece(t[i-1], false), '\n') >= 0 {
			return t[i:]
		}
	}
	return t[start:]
}

// trimBack keeps at most n tokens from the start of t, ending after the last
// token with a newline when there is one.
func trimBack(tk Tokenizer, t []Token, n int) []Token {
	if n >= len(t) {
		return t
	}
	if n <= 0 {
		return nil
	}
	for i := n; i > 0; i-- {
		if bytes.IndexByte(tk.Piece(t[i-1], false), '\n') >= 0 {
			return t[:i]
		}
	}
	return t[:n]
}

func withNewline(s string) string {
	if s == "" || strings.HasSuffix(s, "\n") {
		return s
	}
	return s + "\n"
}

// commentLine names a file in a line comment of its language; empty for an
// empty path.
func commentLine(p string) string {
	if p == "" {
		return ""
	}
	switch strings.ToLower(path.Ext(p)) {
	case ".py", ".rb", ".sh", ".bash", ".yaml", ".yml", ".toml", ".r", ".pl", ".jl", ".ex", ".exs", ".nim", ".cmake", ".mk":
		return "# " + p + "\n"
	case ".sql", ".lua", ".hs", ".elm", ".ada":
		return "-- " + p + "\n"
	case ".lisp", ".clj", ".el", ".scm":
		return ";; " + p + "\n"
	case ".html", ".xml", ".vue", ".svelte", ".md":
		return "<!-- " + p + " -->\n"
	}
	if path.Base(p) == "Makefile" || path.Base(p) == "Dockerfile" {
		return "# " + p + "\n"
	}
	return "// " + p + "\n"
}
