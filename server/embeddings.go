package server

import (
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"math"

	"github.com/gofiber/fiber/v2"

	"github.com/code4me/code4me/engine"
	"github.com/code4me/code4me/internal/remote"
)

// POST /v1/embeddings, as OpenAI's SDKs and Continue's embeddings providers
// call it: input is a string or a list of strings, each redacted as every
// text a model sees, then embedded by the named model (mean-pooled over its
// first engine.EmbedMaxTokens tokens, the vectors retrieval stores) or,
// when no model is named, by the model retrieval uses. encoding_format
// "base64" (the OpenAI Python SDK's default) answers each vector as the
// base64 of its little-endian float32s. Token arrays as input and
// dimensions are refused (400): the server tokenizes itself, and a mean-
// pooled vector cannot be shortened. Nothing is stored. On an API node of
// the worker tier (serve --engine=remote) a worker serving the model
// embeds (503 when none is live), and usage counts no tokens. Without an
// embedding model the route answers 501.

// maxEmbeddingInputs is the most texts one request may embed.
const maxEmbeddingInputs = 256

// openAIEmbeddings handles POST /v1/embeddings.
func (s *Server) openAIEmbeddings(c *fiber.Ctx) error {
	f, err := jsonBytes(c.Body())
	if err != nil {
		return err
	}
	var name string
	if f.has("model") {
		name, _ = f.str("model", false, 0, 0)
	}
	format := "float"
	if f.has("encoding_format") {
		format, _ = f.str("encoding_format", false, 0, 0)
	}
	inputs := embeddingInputs(f)
	if err := f.err(); err != nil {
		return err
	}
	switch {
	case f.has("dimensions"):
		return refuse("dimensions", "dimensions is not supported: the vectors are mean-pooled over the model's embedding width.")
	case format != "float" && format != "base64":
		return refuse("encoding_format", "encoding_format must be float or base64.")
	case len(inputs) > maxEmbeddingInputs:
		return refuse("input", fmt.Sprintf("At most %d texts per request.", maxEmbeddingInputs))
	}
	for i, in := range inputs {
		if in == "" {
			return refuse("input", fmt.Sprintf("input[%d] is empty.", i))
		}
	}
	// The in-process engine, or on an API node of the worker tier the
	// workers that serve the model.
	emb, eng := s.retr.emb, s.retr.eng
	if name == "" {
		name = s.retr.embedder()
	}
	if emb == nil || name == "" {
		return &clientErr{status: fiber.StatusNotImplemented, msg: msgNoEmbeddings, param: "model"}
	}
	m, ok := s.clientModel(name)
	if !ok {
		return &clientErr{status: fiber.StatusNotFound, msg: fmt.Sprintf("The model '%s' does not exist.", name), param: "model", code: "model_not_found"}
	}
	ctx := c.UserContext()
	texts := make([]string, len(inputs))
	for i, in := range inputs {
		texts[i], _ = s.plugin.redactor.Text(ctx, pgText(in))
	}
	vecs, err := emb.Embed(ctx, m.Name, texts)
	if err != nil {
		if ctx.Err() != nil {
			return err
		}
		if errors.Is(err, remote.ErrNoWorker) {
			return fail(fiber.StatusServiceUnavailable, MsgNoWorker)
		}
		return &clientErr{status: fiber.StatusBadRequest, msg: fmt.Sprintf("The model '%s' cannot embed: %v", m.Name, err), param: "model"}
	}
	tokens := 0 // an API node has no tokenizer: it counts none
	if eng != nil {
		if sc, err := eng.Get(m.Name); err == nil {
			for _, t := range texts {
				if toks, err := sc.Model().Tokenize(t, false, false); err == nil {
					tokens += min(len(toks), engine.EmbedMaxTokens)
				}
			}
		}
	}
	data := make([]fiber.Map, len(vecs))
	for i, v := range vecs {
		var emb any = v
		if format == "base64" {
			emb = base64Floats(v)
		}
		data[i] = fiber.Map{"object": "embedding", "index": i, "embedding": emb}
	}
	return c.JSON(fiber.Map{"object": "list", "data": data, "model": m.Name,
		"usage": fiber.Map{"prompt_tokens": tokens, "total_tokens": tokens}})
}

// embeddingInputs reads input: one string or a list of strings.
func embeddingInputs(f *fields) []string {
	raw, ok := f.get("input", true)
	if !ok {
		return nil
	}
	if len(raw) > 0 && raw[0] == '[' {
		out := f.strList("input", true)
		if len(out) == 0 && f.err() == nil {
			f.add("too_short", "input", "List should have at least 1 item", nil, nil)
		}
		return out
	}
	s, _ := f.str("input", true, 0, 0)
	return []string{s}
}

// base64Floats is v as OpenAI's base64 encoding: the little-endian bytes
// of each float32, in order.
func base64Floats(v []float32) string {
	b := make([]byte, 4*len(v))
	for i, x := range v {
		binary.LittleEndian.PutUint32(b[4*i:], math.Float32bits(x))
	}
	return base64.StdEncoding.EncodeToString(b)
}
