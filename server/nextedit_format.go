package server

import (
	"strings"

	"github.com/code4me/code4me/engine"
	"github.com/code4me/code4me/internal/catalog"
)

// The prompt formats of the open next-edit models. Each writes the same
// material (the editable region around the cursor, the text around it,
// the user's recent edits and related snippets) the way its model was
// trained to read it, and reads the rewritten region back from what the
// model wrote. The prompt is the model's whole input (a raw prompt, its
// special tokens parsed).

// Markers of Zed's Zeta format.
const (
	zetaRegionStart = "<|editable_region_start|>"
	zetaRegionEnd   = "<|editable_region_end|>"
	zetaCursor      = "<|user_cursor_is_here|>"
	zetaStartOfFile = "<|start_of_file|>"
	zetaInstruction = "### Instruction:\n" +
		"You are a code completion assistant and your task is to analyze user edits and then rewrite an excerpt that the " +
		"user provides, suggesting the appropriate edits within the excerpt, taking into account the cursor location.\n\n" +
		"### User Edits:\n\n"
	zetaExcerptHeader  = "\n\n### User Excerpt:\n\n"
	zetaResponseHeader = "\n\n### Response:\n"
)

// Markers of Sweep's and Tabby's formats.
const (
	sweepFileSep  = "<|file_sep|>"
	tabbyOriginal = "<|original_code|>"
	tabbyEdits    = "<|edits_diff|>"
	tabbyCurrent  = "<|current_version|>"
	tabbyNext     = "<|next_version|>"
)

// editEvent is one recent edit: a file and its unified diff.
type editEvent struct{ path, diff string }

// nextEditInput is what a next-edit prompt is made of, already redacted.
type nextEditInput struct {
	path string
	// before and after are the excerpt's text around the editable region;
	// region is the region as it is now, cursor a byte offset in it.
	before, region, after string
	cursor                int
	// startOfFile: the excerpt starts at the file's first line.
	startOfFile bool
	// original is the region before the recent edits (Tabby's and Sweep's
	// formats show both); "" when unknown, which shows region for both.
	original string
	// edits are the recent edits, oldest first; snippets related code.
	edits    []editEvent
	snippets []engine.Chunk
	// tabbyDiff, when set, is Tabby's edits_diff exactly as its client sent
	// it, written in place of the edits' diffs.
	tabbyDiff *string
}

// originalRegion is the region before the recent edits, or the region.
func (in *nextEditInput) originalRegion() string {
	if in.original != "" {
		return in.original
	}
	return in.region
}

// nextEditFormatOf is the next-edit format of model m: its catalog
// entry's, or its family's default.
func nextEditFormatOf(m RegisteredModel) string {
	if e, err := catalog.Get(m.Name); err == nil {
		return e.NextEditFormat()
	}
	return catalog.DefaultNextEdit(string(m.Family))
}

// nextEditPrompt writes in in format.
func nextEditPrompt(format string, in *nextEditInput) string {
	switch format {
	case catalog.NextEditSweep:
		return sweepPrompt(in)
	case catalog.NextEditTabby:
		return tabbyPrompt(in)
	}
	return zetaPrompt(in)
}

// nextEditStops are the stop strings of format: what its model writes
// after the rewritten region.
func nextEditStops(format string) []string {
	switch format {
	case catalog.NextEditSweep:
		return []string{sweepFileSep, "<|endoftext|>"}
	case catalog.NextEditTabby:
		return []string{tabbyOriginal, tabbyNext, "<|endoftext|>"}
	}
	return []string{zetaRegionEnd}
}

// zetaPrompt is Zed's Zeta prompt: the instruction, each edit as
//
//	User edited <path>:
//	```diff
//	<diff>
//	```
//
// (blank lines between edits), then the excerpt in a fence named by the
// path, the region between <|editable_region_start|> and
// <|editable_region_end|> lines with <|user_cursor_is_here|> at the
// cursor, and "### Response:". The model writes the excerpt back,
// rewritten.
func zetaPrompt(in *nextEditInput) string {
	var b strings.Builder
	b.WriteString(zetaInstruction)
	for i, e := range in.edits {
		if i > 0 {
			b.WriteString("\n\n")
		}
		b.WriteString("User edited " + e.path + ":\n```diff\n" + withoutFileHeader(e.diff) + "\n```")
	}
	b.WriteString(zetaExcerptHeader)
	b.WriteString("```" + in.path + "\n")
	if in.startOfFile {
		b.WriteString(zetaStartOfFile + "\n")
	}
	b.WriteString(in.before)
	if in.before != "" && !strings.HasSuffix(in.before, "\n") {
		b.WriteString("\n")
	}
	b.WriteString(zetaRegionStart + "\n")
	b.WriteString(in.region[:in.cursor] + zetaCursor + in.region[in.cursor:])
	if !strings.HasSuffix(in.region, "\n") {
		b.WriteString("\n")
	}
	b.WriteString(zetaRegionEnd + "\n")
	b.WriteString(in.after)
	if in.after != "" && !strings.HasSuffix(in.after, "\n") {
		b.WriteString("\n")
	}
	b.WriteString("```")
	b.WriteString(zetaResponseHeader)
	return b.String()
}

// withoutFileHeader drops a unified diff's file header lines (before the
// first hunk): Zeta's edits name the file in their own line.
func withoutFileHeader(diff string) string {
	for {
		line, next, ok := strings.Cut(diff, "\n")
		if !ok || !isFileHeader(line) {
			return diff
		}
		diff = next
	}
}

// isFileHeader reports whether a line before a unified diff's first hunk
// is part of its file header: "diff", "index", and "---" and "+++" with or
// without a space before the file name (Tabby writes "---src/main.rs").
func isFileHeader(line string) bool {
	return strings.HasPrefix(line, "---") || strings.HasPrefix(line, "+++") || strings.HasPrefix(line, "diff ") ||
		strings.HasPrefix(line, "index ")
}

// sweepPrompt is Sweep's next-edit prompt, made of <|file_sep|> blocks:
// each related snippet under its path; the excerpt under the file's path;
// each hunk of each recent edit under "<path>.diff" as "original:" and
// "updated:" text; the region before the edits under "original/<path>"
// and as it is under "current/<path>"; then "updated/<path>", which the
// model fills with the rewritten region.
func sweepPrompt(in *nextEditInput) string {
	var b strings.Builder
	block := func(name, text string) {
		b.WriteString(sweepFileSep + name + "\n" + text)
		if !strings.HasSuffix(text, "\n") {
			b.WriteString("\n")
		}
	}
	for _, s := range in.snippets {
		block(s.Path, s.Text)
	}
	if in.before != "" || in.after != "" {
		block(in.path, in.before+in.region+in.after)
	}
	for _, e := range in.edits {
		for _, h := range parseHunks(e.diff) {
			before := h.before
			if before != "" && !strings.HasSuffix(before, "\n") {
				before += "\n"
			}
			block(e.path+".diff", "original:\n"+before+"updated:\n"+h.after)
		}
	}
	block("original/"+in.path, in.originalRegion())
	block("current/"+in.path, in.region)
	b.WriteString(sweepFileSep + "updated/" + in.path + "\n")
	return b.String()
}

// tabbyPrompt is Tabby's next-edit prompt:
//
//	<|original_code|>\n<original>\n<|edits_diff|>\n<diffs>\n<|current_version|>\n<current>\n<|next_version|>\n
//
// where the diffs are Tabby's edits_diff as its client sent it, or the
// recent edits' diffs one after another; the model writes the next
// version.
func tabbyPrompt(in *nextEditInput) string {
	var diffs string
	if in.tabbyDiff != nil {
		diffs = *in.tabbyDiff
	} else {
		parts := make([]string, len(in.edits))
		for i, e := range in.edits {
			parts[i] = strings.TrimSuffix(e.diff, "\n")
		}
		diffs = strings.Join(parts, "\n")
	}
	return tabbyOriginal + "\n" + in.originalRegion() + "\n" + tabbyEdits + "\n" + diffs + "\n" +
		tabbyCurrent + "\n" + in.region + "\n" + tabbyNext + "\n"
}

// nextEditRegion reads the rewritten region from a model's text in
// format, ending as region ends (with a newline or without). Zeta's model
// writes the excerpt back: the region is what lies between its markers
// (or, with the start marker missing, everything up to the end marker),
// without the cursor marker. Sweep's and Tabby's write the region itself,
// up to their stop strings.
func nextEditRegion(format, text, region string) string {
	out := text
	for _, stop := range nextEditStops(format) {
		if i := strings.Index(out, stop); i >= 0 {
			out = out[:i]
		}
	}
	if format == catalog.NextEditZeta || format == "" {
		out = strings.ReplaceAll(out, zetaCursor, "")
		if i := strings.Index(out, zetaRegionStart); i >= 0 {
			out = strings.TrimPrefix(out[i+len(zetaRegionStart):], "\n")
		}
	}
	switch {
	case out == "":
	case strings.HasSuffix(region, "\n") && !strings.HasSuffix(out, "\n"):
		out += "\n"
	case !strings.HasSuffix(region, "\n"):
		out = strings.TrimSuffix(out, "\n")
	}
	return out
}

// isZetaPrompt reports whether a client-formatted prompt is a Zeta
// next-edit prompt (Zed's edit predictions through an OpenAI-compatible
// server send one): it has the excerpt heading and both region markers.
func isZetaPrompt(prompt string) bool {
	return strings.Contains(prompt, "### User Excerpt:") && strings.Contains(prompt, zetaRegionStart) &&
		strings.Contains(prompt, zetaRegionEnd)
}
