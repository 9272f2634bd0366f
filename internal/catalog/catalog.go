// Package catalog lists the real FIM code models code4me knows how to fetch,
// with their family (which picks the prompt template), download URL and
// expected sha256, and downloads them with resume and verification.
//
// The machines this project is developed on cannot reach model hubs, so the
// sha256 of an entry is empty unless it was verified by a person; a pull of
// such an entry records the hash it computed in a pin file next to the model
// (trust on first use) and every later pull or load is checked against it.
package catalog

import (
	"fmt"
	"slices"
	"strings"
)

// Entry is one downloadable model file.
type Entry struct {
	Name     string // catalog name, e.g. "qwen2.5-coder-1.5b-q8_0"
	Family   string // prompt-template family: qwen2.5-coder, deepseek-coder, starcoder2, codellama, codestral
	Params   string // parameter count as marketed, e.g. "1.5B"
	Quant    string // Q8_0, Q4_K_M
	Chat     bool   // an instruct model used for chat, not FIM
	URL      string // direct download URL
	File     string // file name under the model directory
	SHA256   string // expected hex sha256; empty when not yet pinned
	SizeHint int64  // approximate size in bytes, for messages
	// NextEdit is the prompt format the model is given for next-edit
	// suggestions (NextEditZeta, NextEditSweep, NextEditTabby); "" takes
	// its family's default (DefaultNextEdit). Read it with NextEditFormat.
	NextEdit string
}

const hf = "https://huggingface.co/"

func hfURL(repo, file string) string { return hf + repo + "/resolve/main/" + file }

var entries = []Entry{
	{Name: "qwen2.5-coder-0.5b-q8_0", Family: "qwen2.5-coder", Params: "0.5B", Quant: "Q8_0", File: "qwen2.5-coder-0.5b-q8_0.gguf", URL: hfURL("ggml-org/Qwen2.5-Coder-0.5B-Q8_0-GGUF", "qwen2.5-coder-0.5b-q8_0.gguf"), SizeHint: 531e6},
	{Name: "qwen2.5-coder-1.5b-q8_0", Family: "qwen2.5-coder", Params: "1.5B", Quant: "Q8_0", File: "qwen2.5-coder-1.5b-q8_0.gguf", URL: hfURL("ggml-org/Qwen2.5-Coder-1.5B-Q8_0-GGUF", "qwen2.5-coder-1.5b-q8_0.gguf"), SizeHint: 1.65e9},
	{Name: "qwen2.5-coder-3b-q8_0", Family: "qwen2.5-coder", Params: "3B", Quant: "Q8_0", File: "qwen2.5-coder-3b-q8_0.gguf", URL: hfURL("ggml-org/Qwen2.5-Coder-3B-Q8_0-GGUF", "qwen2.5-coder-3b-q8_0.gguf"), SizeHint: 3.3e9},
	{Name: "qwen2.5-coder-7b-q8_0", Family: "qwen2.5-coder", Params: "7B", Quant: "Q8_0", File: "qwen2.5-coder-7b-q8_0.gguf", URL: hfURL("ggml-org/Qwen2.5-Coder-7B-Q8_0-GGUF", "qwen2.5-coder-7b-q8_0.gguf"), SizeHint: 8.1e9},
	{Name: "qwen2.5-coder-0.5b-q4_k_m", Family: "qwen2.5-coder", Params: "0.5B", Quant: "Q4_K_M", File: "Qwen2.5-Coder-0.5B.Q4_K_M.gguf", URL: hfURL("QuantFactory/Qwen2.5-Coder-0.5B-GGUF", "Qwen2.5-Coder-0.5B.Q4_K_M.gguf"), SizeHint: 398e6},
	{Name: "qwen2.5-coder-1.5b-q4_k_m", Family: "qwen2.5-coder", Params: "1.5B", Quant: "Q4_K_M", File: "Qwen2.5-Coder-1.5B.Q4_K_M.gguf", URL: hfURL("QuantFactory/Qwen2.5-Coder-1.5B-GGUF", "Qwen2.5-Coder-1.5B.Q4_K_M.gguf"), SizeHint: 986e6},
	{Name: "qwen2.5-coder-3b-q4_k_m", Family: "qwen2.5-coder", Params: "3B", Quant: "Q4_K_M", File: "Qwen2.5-Coder-3B.Q4_K_M.gguf", URL: hfURL("QuantFactory/Qwen2.5-Coder-3B-GGUF", "Qwen2.5-Coder-3B.Q4_K_M.gguf"), SizeHint: 1.93e9},
	{Name: "qwen2.5-coder-7b-q4_k_m", Family: "qwen2.5-coder", Params: "7B", Quant: "Q4_K_M", File: "Qwen2.5-Coder-7B.Q4_K_M.gguf", URL: hfURL("QuantFactory/Qwen2.5-Coder-7B-GGUF", "Qwen2.5-Coder-7B.Q4_K_M.gguf"), SizeHint: 4.68e9},
	{Name: "deepseek-coder-1.3b-base-q8_0", Family: "deepseek-coder", Params: "1.3B", Quant: "Q8_0", File: "deepseek-coder-1.3b-base.Q8_0.gguf", URL: hfURL("TheBloke/deepseek-coder-1.3b-base-GGUF", "deepseek-coder-1.3b-base.Q8_0.gguf"), SizeHint: 1.43e9},
	{Name: "deepseek-coder-1.3b-base-q4_k_m", Family: "deepseek-coder", Params: "1.3B", Quant: "Q4_K_M", File: "deepseek-coder-1.3b-base.Q4_K_M.gguf", URL: hfURL("TheBloke/deepseek-coder-1.3b-base-GGUF", "deepseek-coder-1.3b-base.Q4_K_M.gguf"), SizeHint: 874e6},
	{Name: "deepseek-coder-6.7b-base-q8_0", Family: "deepseek-coder", Params: "6.7B", Quant: "Q8_0", File: "deepseek-coder-6.7b-base.Q8_0.gguf", URL: hfURL("TheBloke/deepseek-coder-6.7B-base-GGUF", "deepseek-coder-6.7b-base.Q8_0.gguf"), SizeHint: 7.16e9},
	{Name: "deepseek-coder-6.7b-base-q4_k_m", Family: "deepseek-coder", Params: "6.7B", Quant: "Q4_K_M", File: "deepseek-coder-6.7b-base.Q4_K_M.gguf", URL: hfURL("TheBloke/deepseek-coder-6.7B-base-GGUF", "deepseek-coder-6.7b-base.Q4_K_M.gguf"), SizeHint: 4.08e9},
	{Name: "starcoder2-3b-q8_0", Family: "starcoder2", Params: "3B", Quant: "Q8_0", File: "starcoder2-3b-Q8_0.gguf", URL: hfURL("second-state/StarCoder2-3B-GGUF", "starcoder2-3b-Q8_0.gguf"), SizeHint: 3.22e9},
	{Name: "starcoder2-3b-q4_k_m", Family: "starcoder2", Params: "3B", Quant: "Q4_K_M", File: "starcoder2-3b-Q4_K_M.gguf", URL: hfURL("second-state/StarCoder2-3B-GGUF", "starcoder2-3b-Q4_K_M.gguf"), SizeHint: 1.85e9},
	{Name: "starcoder2-7b-q8_0", Family: "starcoder2", Params: "7B", Quant: "Q8_0", File: "starcoder2-7b-Q8_0.gguf", URL: hfURL("second-state/StarCoder2-7B-GGUF", "starcoder2-7b-Q8_0.gguf"), SizeHint: 7.63e9},
	{Name: "starcoder2-7b-q4_k_m", Family: "starcoder2", Params: "7B", Quant: "Q4_K_M", File: "starcoder2-7b-Q4_K_M.gguf", URL: hfURL("second-state/StarCoder2-7B-GGUF", "starcoder2-7b-Q4_K_M.gguf"), SizeHint: 4.4e9},
	// Sweep's next-edit model, a Qwen2.5-Coder-1.5B fine-tune for its own
	// next-edit format.
	{Name: "sweep-next-edit-1.5b-q8_0", Family: "qwen2.5-coder", Params: "1.5B", Quant: "Q8_0", NextEdit: NextEditSweep, File: "sweep-next-edit-1.5b.q8_0.v2.gguf", URL: hfURL("sweepai/sweep-next-edit-1.5B", "sweep-next-edit-1.5b.q8_0.v2.gguf"), SizeHint: 1.6e9},
	{Name: "qwen2.5-coder-1.5b-instruct-q8_0", Family: "qwen2.5-coder", Params: "1.5B", Quant: "Q8_0", Chat: true, File: "qwen2.5-coder-1.5b-instruct-q8_0.gguf", URL: hfURL("Qwen/Qwen2.5-Coder-1.5B-Instruct-GGUF", "qwen2.5-coder-1.5b-instruct-q8_0.gguf"), SizeHint: 1.89e9},
}

// Next-edit prompt formats: how a model is asked to rewrite the editable
// region around the cursor given the user's recent edits.
const (
	// NextEditZeta is Zed's Zeta format: an instruction, the recent edits
	// as diffs and the excerpt with <|editable_region_start|>,
	// <|user_cursor_is_here|> and <|editable_region_end|> markers. It is
	// plain text, so any model can be given it.
	NextEditZeta = "zeta"
	// NextEditSweep is Sweep's next-edit format: <|file_sep|> blocks (the
	// context files, each edit as original/updated text, the region as it
	// was and is), ending with the block the model writes the updated
	// region in. Qwen2.5-Coder knows <|file_sep|> from its pre-training.
	NextEditSweep = "sweep"
	// NextEditTabby is Tabby's format: <|original_code|>, <|edits_diff|>,
	// <|current_version|>, then <|next_version|> for the model to write.
	NextEditTabby = "tabby"
)

// NextEditFormats are the known next-edit prompt formats.
var NextEditFormats = []string{NextEditZeta, NextEditSweep, NextEditTabby}

// DefaultNextEdit is the next-edit format of a model of family: Sweep's
// for Qwen2.5-Coder (whose pre-training has the <|file_sep|> blocks that
// format is made of), Zeta's plain-text format for every other family.
func DefaultNextEdit(family string) string {
	if family == "qwen2.5-coder" {
		return NextEditSweep
	}
	return NextEditZeta
}

// NextEditFormat is the next-edit prompt format e's model is given.
func (e Entry) NextEditFormat() string {
	if e.NextEdit != "" {
		return e.NextEdit
	}
	return DefaultNextEdit(e.Family)
}

// All returns the catalog, sorted by name.
func All() []Entry {
	out := slices.Clone(entries)
	slices.SortFunc(out, func(a, b Entry) int { return strings.Compare(a.Name, b.Name) })
	return out
}

// Get finds an entry by name.
func Get(name string) (Entry, error) {
	for _, e := range entries {
		if e.Name == name {
			return e, nil
		}
	}
	return Entry{}, fmt.Errorf("no model %q in the catalog (see `code4me model list`)", name)
}

// DefaultFIM is the model serve loads when MODELS is empty and it has been
// pulled.
const DefaultFIM = "qwen2.5-coder-1.5b-q8_0"
