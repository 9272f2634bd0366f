package server

import (
	"fmt"
	"strings"
)

// Line diffs for next-edit suggestions: the answer gives the rewritten
// region as a unified diff against the region the model was shown, and the
// Sweep prompt format turns the client's unified diffs back into the text
// before and after each hunk.

// diffOp is one line of an edit script: ' ' kept, '-' removed from the old
// text, '+' added by the new one. line keeps its "\n" (the last line of a
// text may have none).
type diffOp struct {
	kind byte
	line string
}

// splitLines cuts s into lines, each with its "\n"; the last has none when
// s does not end with one. "" has no lines.
func splitLines(s string) []string {
	if s == "" {
		return nil
	}
	lines := strings.SplitAfter(s, "\n")
	if lines[len(lines)-1] == "" {
		lines = lines[:len(lines)-1]
	}
	return lines
}

// maxLCSCells bounds the table of the longest-common-subsequence search:
// past it (two regions of thousands of differing lines) the differing
// middle is given as removed and added whole, which is still a correct
// diff, only not the shortest.
const maxLCSCells = 4 << 20

// diffLines is the edit script turning a into b: the longest common
// subsequence of their lines is kept, every other line of a removed and of
// b added, removals before additions where they meet. Applying the script
// to a gives b exactly (applyDiff).
func diffLines(a, b []string) []diffOp {
	// The common head and tail are kept as they are; only the middle needs
	// the table.
	head := 0
	for head < len(a) && head < len(b) && a[head] == b[head] {
		head++
	}
	tail := 0
	for tail < len(a)-head && tail < len(b)-head && a[len(a)-1-tail] == b[len(b)-1-tail] {
		tail++
	}
	ops := make([]diffOp, 0, len(a)+len(b))
	for _, l := range a[:head] {
		ops = append(ops, diffOp{' ', l})
	}
	ma, mb := a[head:len(a)-tail], b[head:len(b)-tail]
	if len(ma)*len(mb) > maxLCSCells {
		for _, l := range ma {
			ops = append(ops, diffOp{'-', l})
		}
		for _, l := range mb {
			ops = append(ops, diffOp{'+', l})
		}
	} else {
		ops = append(ops, lcsOps(ma, mb)...)
	}
	for _, l := range a[len(a)-tail:] {
		ops = append(ops, diffOp{' ', l})
	}
	return ops
}

// lcsOps is the edit script of a and b by dynamic programming: n[i][j] is
// the length of the longest common subsequence of a[i:] and b[j:].
func lcsOps(a, b []string) []diffOp {
	w := len(b) + 1
	n := make([]int32, (len(a)+1)*w)
	for i := len(a) - 1; i >= 0; i-- {
		for j := len(b) - 1; j >= 0; j-- {
			if a[i] == b[j] {
				n[i*w+j] = n[(i+1)*w+j+1] + 1
			} else {
				n[i*w+j] = max(n[(i+1)*w+j], n[i*w+j+1])
			}
		}
	}
	var ops []diffOp
	i, j := 0, 0
	for i < len(a) && j < len(b) {
		switch {
		case a[i] == b[j]:
			ops = append(ops, diffOp{' ', a[i]})
			i++
			j++
		case n[(i+1)*w+j] >= n[i*w+j+1]:
			ops = append(ops, diffOp{'-', a[i]})
			i++
		default:
			ops = append(ops, diffOp{'+', b[j]})
			j++
		}
	}
	for ; i < len(a); i++ {
		ops = append(ops, diffOp{'-', a[i]})
	}
	for ; j < len(b); j++ {
		ops = append(ops, diffOp{'+', b[j]})
	}
	return ops
}

// applyDiff rebuilds the old (false) or new (true) text from an edit
// script.
func applyDiff(ops []diffOp, newText bool) string {
	var sb strings.Builder
	for _, op := range ops {
		if op.kind == ' ' || (op.kind == '+') == newText {
			sb.WriteString(op.line)
		}
	}
	return sb.String()
}

// diffContext is the number of unchanged lines a unified diff shows around
// each change, as diff -u and git do.
const diffContext = 3

// unifiedDiff is the unified diff turning a into b, with path in its
// "--- a/path" and "+++ b/path" header, or "" when they are equal. Hunks
// show diffContext lines of context and are merged when their context
// meets; a line without a final newline is followed by "\ No newline at
// end of file", as diff -u writes it.
func unifiedDiff(path, a, b string) string {
	if a == b {
		return ""
	}
	ops := diffLines(splitLines(a), splitLines(b))
	var sb strings.Builder
	fmt.Fprintf(&sb, "--- a/%s\n+++ b/%s\n", path, path)
	// oldAt[k] and newAt[k] are the line numbers (0-based) op k starts at.
	oldAt, newAt := make([]int, len(ops)+1), make([]int, len(ops)+1)
	for k, op := range ops {
		oldAt[k+1], newAt[k+1] = oldAt[k], newAt[k]
		if op.kind != '+' {
			oldAt[k+1]++
		}
		if op.kind != '-' {
			newAt[k+1]++
		}
	}
	for k := 0; k < len(ops); {
		if ops[k].kind == ' ' {
			k++
			continue
		}
		// A hunk from diffContext lines before this change to diffContext
		// lines after the last change that is no more than 2*diffContext
		// kept lines after the one before it.
		start := max(0, k-diffContext)
		end := k
		for end < len(ops) {
			if ops[end].kind != ' ' {
				end++
				continue
			}
			run := end
			for run < len(ops) && ops[run].kind == ' ' {
				run++
			}
			if run == len(ops) || run-end > 2*diffContext {
				end = min(end+diffContext, len(ops))
				break
			}
			end = run
		}
		oldN, newN := oldAt[end]-oldAt[start], newAt[end]-newAt[start]
		fmt.Fprintf(&sb, "@@ -%s +%s @@\n", hunkRange(oldAt[start], oldN), hunkRange(newAt[start], newN))
		for _, op := range ops[start:end] {
			sb.WriteByte(op.kind)
			sb.WriteString(op.line)
			if !strings.HasSuffix(op.line, "\n") {
				sb.WriteString("\n\\ No newline at end of file\n")
			}
		}
		k = end
	}
	return sb.String()
}

// hunkRange writes a hunk header's range: "start,count", the start
// 1-based, ",1" left out, and an empty range named by the line before it.
func hunkRange(at, n int) string {
	switch n {
	case 0:
		return fmt.Sprintf("%d,0", at)
	case 1:
		return fmt.Sprintf("%d", at+1)
	}
	return fmt.Sprintf("%d,%d", at+1, n)
}

// diffHunk is one hunk of a unified diff: the lines it covers before and
// after the change (context included).
type diffHunk struct{ before, after string }

// parseHunks reads the hunks of a unified diff: the file header before the
// first hunk is skipped (isFileHeader), each "@@" line starts a hunk, and
// a line starting with ' ', '-' or '+' belongs to it ("\ No newline at end
// of file" takes the newline off the line before it). A diff without an
// "@@" line is read as one hunk.
func parseHunks(diff string) []diffHunk {
	var out []diffHunk
	var before, after strings.Builder
	var last *strings.Builder // the side(s) the previous line went to
	var lastBoth bool
	open := false
	flush := func() {
		if open && (before.Len() > 0 || after.Len() > 0) {
			out = append(out, diffHunk{before.String(), after.String()})
		}
		before.Reset()
		after.Reset()
		open = false
	}
	trimLast := func(b *strings.Builder) {
		s := strings.TrimSuffix(b.String(), "\n")
		b.Reset()
		b.WriteString(s)
	}
	for _, line := range splitLines(diff) {
		switch {
		case strings.HasPrefix(line, "@@"):
			flush()
			open = true
			continue
		case strings.HasPrefix(line, `\`):
			if last != nil {
				trimLast(last)
				if lastBoth {
					trimLast(&after)
				}
			}
			continue
		case !open && len(out) == 0 && isFileHeader(line):
			continue
		}
		open = true
		body := line[1:]
		last, lastBoth = nil, false
		switch line[0] {
		case '-':
			before.WriteString(body)
			last = &before
		case '+':
			after.WriteString(body)
			last = &after
		default:
			// A context line (' ', or an empty line some tools write for an
			// empty context line).
			if line[0] != ' ' {
				body = line
			}
			before.WriteString(body)
			after.WriteString(body)
			last, lastBoth = &before, true
		}
	}
	flush()
	return out
}
