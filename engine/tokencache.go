package engine

import (
	"container/list"
	"strings"
	"sync"
)

// DefaultTokenCacheBytes is the size of a scheduler's token cache when
// Config.TokenCacheBytes is zero.
const DefaultTokenCacheBytes = 16 << 20

// entryOverhead approximates the bytes of map entry, list element and slice
// headers that one cached text costs besides its text and tokens.
const entryOverhead = 128

// TokenCache is a Tokenizer that remembers the tokens of the texts it has
// tokenized, least recently used first out, within a bound in bytes. A FIM
// prompt is tokenized part by part (each extra file, the prefix lines before
// the cursor line, the suffix, the cursor line), and while the user types on
// one line only the cursor line changes, so all other parts are cache hits.
// Short texts are kept too: llama.cpp's tokenizer costs about a third of a
// millisecond per call even for one byte (the Qwen2 pre-tokenizer compiles
// its regular expression on every call), so a file path or a repository
// name is worth a hit.
//
// Entries are keyed by the exact text and the two flags, and a hit compares
// the whole text, so a hit returns exactly what the wrapped Tokenizer
// returned for that text: the cache can never change a prompt's tokens. The
// wrapped Tokenizer must be deterministic, which model tokenizers are.
//
// TokenCache is safe for concurrent use; tokenization of a miss runs outside
// its lock, in the caller's goroutine.
type TokenCache struct {
	tk       Tokenizer
	maxBytes int

	mu     sync.Mutex
	byKey  map[tokenKey]*list.Element // of *tokenEntry
	lru    list.List                  // front: most recently used
	bytes  int
	hits   uint64
	misses uint64
}

type tokenKey struct {
	text                     string
	addSpecial, parseSpecial bool
}

type tokenEntry struct {
	key    tokenKey
	tokens []Token
	cost   int
}

// TokenCacheStats describe a TokenCache.
type TokenCacheStats struct {
	Entries      int
	Bytes        int // texts, tokens and overhead held, at most the bound
	Hits, Misses uint64
}

// NewTokenCache returns a cache over tk holding at most maxBytes of texts
// and tokens. A maxBytes <= 0 caches nothing.
func NewTokenCache(tk Tokenizer, maxBytes int) *TokenCache {
	return &TokenCache{tk: tk, maxBytes: maxBytes, byKey: map[tokenKey]*list.Element{}}
}

// Tokenize returns the tokens of text, from the cache when the same text was
// tokenized with the same flags before. The returned slice is the caller's.
func (c *TokenCache) Tokenize(text string, addSpecial, parseSpecial bool) ([]Token, error) {
	if c.maxBytes <= 0 {
		return c.tk.Tokenize(text, addSpecial, parseSpecial)
	}
	key := tokenKey{text, addSpecial, parseSpecial}
	c.mu.Lock()
	if el, ok := c.byKey[key]; ok {
		c.lru.MoveToFront(el)
		c.hits++
		toks := el.Value.(*tokenEntry).tokens
		c.mu.Unlock()
		return append([]Token(nil), toks...), nil
	}
	c.misses++
	c.mu.Unlock()

	toks, err := c.tk.Tokenize(text, addSpecial, parseSpecial)
	if err != nil {
		return nil, err
	}
	e := &tokenEntry{tokens: append([]Token(nil), toks...)}
	e.cost = len(text) + 4*len(toks) + entryOverhead
	if e.cost > c.maxBytes/2 {
		return toks, nil // one text would push out most of the cache
	}
	// Own the key: text may be a slice of a much larger request string.
	e.key = tokenKey{strings.Clone(text), addSpecial, parseSpecial}
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.byKey[key]; ok {
		return toks, nil // a concurrent caller stored it first
	}
	c.byKey[e.key] = c.lru.PushFront(e)
	c.bytes += e.cost
	for c.bytes > c.maxBytes {
		old := c.lru.Remove(c.lru.Back()).(*tokenEntry)
		delete(c.byKey, old.key)
		c.bytes -= old.cost
	}
	return toks, nil
}

// Piece returns the bytes of one token from the wrapped Tokenizer.
func (c *TokenCache) Piece(t Token, special bool) []byte { return c.tk.Piece(t, special) }

// Stats reports the cache's size and hit counts.
func (c *TokenCache) Stats() TokenCacheStats {
	c.mu.Lock()
	defer c.mu.Unlock()
	return TokenCacheStats{Entries: len(c.byKey), Bytes: c.bytes, Hits: c.hits, Misses: c.misses}
}
