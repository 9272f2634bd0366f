// Package hocon checks that a text is a well-formed HOCON document, the
// format of the configs handed to the editor plugins. It checks syntax
// only: it builds no tree, resolves no substitutions and follows no
// includes, so a document it accepts may still name a missing key. JSON
// is HOCON, so every JSON object passes.
//
// The accepted syntax: a root object, braced or not; fields "key = value",
// "key : value", "key += value" or "key { ... }", separated by commas or
// newlines; keys of unquoted or quoted parts joined by dots; values that
// are objects, arrays, quoted strings ("..." with JSON escapes, or
// """...""" over several lines), substitutions (${a.b}, ${?a.b}) or
// unquoted text, several of them on one line concatenated; comments from
// # or // to the end of the line; include "file" statements.
package hocon

import (
	"fmt"
	"strings"
	"unicode/utf8"
)

// SyntaxError is where and why a document does not parse. Line and Column
// count from 1; Column counts characters.
type SyntaxError struct {
	Line, Column int
	Msg          string
}

func (e *SyntaxError) Error() string {
	return fmt.Sprintf("line %d, column %d: %s", e.Line, e.Column, e.Msg)
}

// Validate returns nil when text is a well-formed HOCON document, else a
// *SyntaxError naming the first problem. An empty document is an error:
// a config must say something.
func Validate(text string) error {
	if !utf8.ValidString(text) {
		return &SyntaxError{Line: 1, Column: 1, Msg: "the text is not valid UTF-8"}
	}
	p := &parser{s: text}
	p.skipSpace(true)
	if p.eof() {
		return p.errorf("the document is empty")
	}
	if p.peek() == '{' {
		if err := p.object(); err != nil {
			return err
		}
		p.skipSpace(true)
		if !p.eof() {
			return p.errorf("unexpected %s after the root object", p.describe())
		}
		return nil
	}
	return p.fields(0)
}

type parser struct {
	s   string
	pos int
}

func (p *parser) eof() bool  { return p.pos >= len(p.s) }
func (p *parser) peek() byte { return p.s[p.pos] }

func (p *parser) errorf(format string, args ...any) error {
	line := 1 + strings.Count(p.s[:p.pos], "\n")
	start := strings.LastIndexByte(p.s[:p.pos], '\n') + 1
	return &SyntaxError{Line: line, Column: 1 + utf8.RuneCountInString(p.s[start:p.pos]), Msg: fmt.Sprintf(format, args...)}
}

// describe names what is at the current position, for messages.
func (p *parser) describe() string {
	if p.eof() {
		return "end of document"
	}
	r, _ := utf8.DecodeRuneInString(p.s[p.pos:])
	if r == '\n' {
		return "end of line"
	}
	return fmt.Sprintf("%q", r)
}

// comment reports whether a comment starts at the current position.
func (p *parser) comment() bool {
	return !p.eof() && (p.peek() == '#' || strings.HasPrefix(p.s[p.pos:], "//"))
}

// skipSpace skips blanks and comments, and newlines too when newlines is set.
func (p *parser) skipSpace(newlines bool) {
	for !p.eof() {
		switch c := p.peek(); {
		case c == ' ' || c == '\t' || c == '\r' || c == '\f' || c == '\v':
			p.pos++
		case c == '\n' && newlines:
			p.pos++
		case p.comment():
			for !p.eof() && p.peek() != '\n' {
				p.pos++
			}
		default:
			if r, n := utf8.DecodeRuneInString(p.s[p.pos:]); r == '\uFEFF' || r == '\u00A0' {
				p.pos += n
				continue
			}
			return
		}
	}
}

// unquotedStop reports whether c cannot be part of unquoted text.
func unquotedStop(c byte) bool {
	return strings.IndexByte("$\"{}[]:=,+#`^?!@*&\\ \t\r\n\f\v", c) >= 0
}

// fields parses fields up to closer ('}', or 0 for the end of the
// document), leaving the position on closer.
func (p *parser) fields(closer byte) error {
	for {
		p.skipSpace(true)
		if p.eof() {
			if closer == 0 {
				return nil
			}
			return p.errorf("missing %q: the object is not closed", closer)
		}
		if p.peek() == closer {
			return nil
		}
		if err := p.field(); err != nil {
			return err
		}
		p.skipSpace(false)
		switch {
		case p.eof() && closer == 0:
			return nil
		case p.eof():
			return p.errorf("missing %q: the object is not closed", closer)
		case p.peek() == ',':
			p.pos++
		case p.peek() == '\n':
		case p.peek() == closer:
			return nil
		default:
			return p.errorf("expected a comma or a new line after a field, found %s", p.describe())
		}
	}
}

// field parses one field or include statement.
func (p *parser) field() error {
	if strings.HasPrefix(p.s[p.pos:], "include") {
		save := p.pos
		p.pos += len("include")
		p.skipSpace(false)
		if !p.eof() && p.peek() == '"' {
			return p.quoted()
		}
		p.pos = save
	}
	if err := p.key(); err != nil {
		return err
	}
	p.skipSpace(false)
	if p.eof() {
		return p.errorf("the key has no value")
	}
	switch c := p.peek(); {
	case c == '{':
		return p.object()
	case c == '=' || c == ':':
		p.pos++
	case strings.HasPrefix(p.s[p.pos:], "+="):
		p.pos += 2
	default:
		return p.errorf("expected '=', ':' or '{' after the key, found %s", p.describe())
	}
	p.skipSpace(false)
	return p.value()
}

// key parses a path of unquoted or quoted parts joined by dots.
func (p *parser) key() error {
	for {
		if p.eof() {
			return p.errorf("expected a key, found end of document")
		}
		switch c := p.peek(); {
		case c == '"':
			if strings.HasPrefix(p.s[p.pos:], `"""`) {
				return p.errorf("a key cannot be a triple-quoted string")
			}
			if err := p.quoted(); err != nil {
				return err
			}
		case c == '.' || unquotedStop(c) || p.comment():
			return p.errorf("expected a key, found %s", p.describe())
		default:
			for !p.eof() && !unquotedStop(p.peek()) && p.peek() != '.' && !p.comment() {
				p.pos++
			}
		}
		if p.eof() || p.peek() != '.' {
			return nil
		}
		p.pos++
	}
}

// value parses a value: one or more parts on one line.
func (p *parser) value() error {
	if p.eof() || p.peek() == '\n' || p.peek() == ',' || p.peek() == '}' || p.peek() == ']' || p.comment() {
		return p.errorf("expected a value, found %s", p.describe())
	}
	for {
		if err := p.part(); err != nil {
			return err
		}
		p.skipSpace(false)
		if p.eof() || p.comment() {
			return nil
		}
		switch p.peek() {
		case '\n', ',', '}', ']':
			return nil
		}
	}
}

// part parses one part of a value.
func (p *parser) part() error {
	switch c := p.peek(); {
	case c == '{':
		return p.object()
	case c == '[':
		return p.array()
	case c == '"':
		return p.quoted()
	case c == '$':
		return p.substitution()
	case unquotedStop(c):
		return p.errorf("unexpected %s in a value", p.describe())
	}
	for !p.eof() && !unquotedStop(p.peek()) && !p.comment() {
		p.pos++
	}
	return nil
}

// object parses a braced object.
func (p *parser) object() error {
	p.pos++ // {
	if err := p.fields('}'); err != nil {
		return err
	}
	p.pos++ // }
	return nil
}

// array parses a bracketed array of values separated by commas or newlines.
func (p *parser) array() error {
	p.pos++ // [
	for {
		p.skipSpace(true)
		if p.eof() {
			return p.errorf("missing ']': the array is not closed")
		}
		if p.peek() == ']' {
			p.pos++
			return nil
		}
		if err := p.value(); err != nil {
			return err
		}
		p.skipSpace(false)
		switch {
		case p.eof():
			return p.errorf("missing ']': the array is not closed")
		case p.peek() == ',':
			p.pos++
		case p.peek() == '\n' || p.peek() == ']':
		default:
			return p.errorf("expected a comma or a new line between array elements, found %s", p.describe())
		}
	}
}

// quoted parses "..." with JSON escapes, or """...""".
func (p *parser) quoted() error {
	if strings.HasPrefix(p.s[p.pos:], `"""`) {
		start := p.pos
		end := strings.Index(p.s[p.pos+3:], `"""`)
		if end < 0 {
			return p.errorf("the triple-quoted string is not closed")
		}
		p.pos = start + 3 + end + 3
		for !p.eof() && p.peek() == '"' { // """ may end with more quotes
			p.pos++
		}
		return nil
	}
	p.pos++ // "
	for {
		if p.eof() || p.peek() == '\n' {
			return p.errorf("the string is not closed before the end of the line")
		}
		switch p.peek() {
		case '"':
			p.pos++
			return nil
		case '\\':
			p.pos++
			if p.eof() {
				return p.errorf("the string is not closed before the end of the document")
			}
			switch p.peek() {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
				p.pos++
			case 'u':
				if len(p.s) < p.pos+5 || strings.Trim(p.s[p.pos+1:p.pos+5], "0123456789abcdefABCDEF") != "" {
					return p.errorf("\\u must be followed by four hexadecimal digits")
				}
				p.pos += 5
			default:
				return p.errorf("invalid escape \\%s in a string", p.describe())
			}
		default:
			p.pos++
		}
	}
}

// substitution parses ${path} or ${?path}.
func (p *parser) substitution() error {
	if !strings.HasPrefix(p.s[p.pos:], "${") {
		return p.errorf("'$' must start a substitution ${...}")
	}
	p.pos += 2
	if !p.eof() && p.peek() == '?' {
		p.pos++
	}
	p.skipSpace(false)
	if err := p.key(); err != nil {
		return err
	}
	p.skipSpace(false)
	if p.eof() || p.peek() != '}' {
		return p.errorf("expected '}' to close the substitution, found %s", p.describe())
	}
	p.pos++
	return nil
}
