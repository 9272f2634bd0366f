package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/code4me/code4me/engine"
	"github.com/code4me/code4me/engine/gguf"
	"github.com/code4me/code4me/engine/llama"
	"github.com/code4me/code4me/engine/synth"
	"github.com/code4me/code4me/internal/catalog"
	"github.com/code4me/code4me/internal/config"
	"golang.org/x/term"
)

// modelRef is a model file to load and how to lay out its prompts.
type modelRef struct {
	Name      string `json:"name"`
	Path      string `json:"path"`
	Family    string `json:"family,omitempty"` // empty: detected from the file
	Synthetic bool   `json:"synthetic,omitempty"`
}

// registry is the list of local GGUF files added with `model add`, kept in
// MODEL_DIR/registry.json.
func registryPath(c config.Config) string {
	return filepath.Join(c.ModelDirectory(), "registry.json")
}

func readRegistry(c config.Config) ([]modelRef, error) {
	b, err := os.ReadFile(registryPath(c))
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var refs []modelRef
	if err := json.Unmarshal(b, &refs); err != nil {
		return nil, fmt.Errorf("%s: %w", registryPath(c), err)
	}
	return refs, nil
}

func writeRegistry(c config.Config, refs []modelRef) error {
	b, _ := json.MarshalIndent(refs, "", "  ")
	if err := os.MkdirAll(c.ModelDirectory(), 0o755); err != nil {
		return err
	}
	tmp := registryPath(c) + ".tmp"
	if err := os.WriteFile(tmp, append(b, '\n'), 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, registryPath(c))
}

// resolveModel turns a name into a file: a path to a GGUF, a name added with
// `model add`, a pulled catalog entry, or a synthetic shape (written on
// first use).
func resolveModel(ctx context.Context, c config.Config, name string) (modelRef, error) {
	if strings.HasSuffix(name, ".gguf") || strings.ContainsRune(name, os.PathSeparator) {
		if _, err := os.Stat(name); err != nil {
			return modelRef{}, fmt.Errorf("model file %s: %w", name, errors.Unwrap(err))
		}
		return modelRef{Name: strings.TrimSuffix(filepath.Base(name), ".gguf"), Path: name}, nil
	}
	refs, err := readRegistry(c)
	if err != nil {
		return modelRef{}, err
	}
	for _, r := range refs {
		if r.Name == name {
			return r, nil
		}
	}
	if e, err := catalog.Get(name); err == nil {
		p := &catalog.Puller{Dir: c.ModelDirectory()}
		if _, err := os.Stat(p.Path(e)); err != nil {
			return modelRef{}, fmt.Errorf("model %s is not pulled: run `code4me model pull %s`", name, name)
		}
		return modelRef{Name: e.Name, Path: p.Path(e), Family: e.Family}, nil
	}
	shape, typ, _ := strings.Cut(name, ":")
	if _, err := synth.Lookup(shape); err == nil {
		if typ == "" {
			typ = "q8_0"
			if strings.HasPrefix(shape, "tiny") {
				typ = "f16"
			}
		}
		path, err := ensureSynthetic(ctx, filepath.Join(c.ModelDirectory(), "synthetic"), shape, typ)
		if err != nil {
			return modelRef{}, err
		}
		return modelRef{Name: "synthetic-" + shape, Path: path, Synthetic: true}, nil
	}
	return modelRef{}, fmt.Errorf("unknown model %q: not a GGUF path, an added model, a catalog entry or a synthetic shape (see `code4me model list`)", name)
}

// syntheticChatShape is the shape of the synthetic chat model served
// beside the synthetic completion model, and syntheticChatName its name:
// the word "chat" in it makes it a chat model (server.IsChatName), and
// the file carries a ChatML template (synth.ChatTemplate).
const (
	syntheticChatShape = "tiny"
	syntheticChatName  = "synthetic-tiny-chat"
)

// serveModels picks what serve loads: MODELS when set; otherwise every
// pulled catalog entry and added model; otherwise a synthetic completion
// model (SYNTHETIC_MODEL) and a tiny synthetic chat model, so that
// completions and chat both answer out of the box.
func serveModels(ctx context.Context, c config.Config, log *slog.Logger) ([]modelRef, error) {
	var refs []modelRef
	if len(c.Models) > 0 {
		for _, n := range c.Models {
			r, err := resolveModel(ctx, c, n)
			if err != nil {
				return nil, fmt.Errorf("MODELS: %w", err)
			}
			refs = append(refs, r)
		}
		return refs, nil
	}
	added, err := readRegistry(c)
	if err != nil {
		return nil, err
	}
	refs = append(refs, added...)
	p := &catalog.Puller{Dir: c.ModelDirectory()}
	for _, e := range catalog.All() {
		if _, err := os.Stat(p.Path(e)); err == nil {
			refs = append(refs, modelRef{Name: e.Name, Path: p.Path(e), Family: e.Family})
		}
	}
	if len(refs) > 0 {
		return refs, nil
	}
	log.Warn("no model available: serving a synthetic model with random weights (completions are noise); run `code4me model pull` for real weights",
		slog.String("shape", c.SyntheticShape))
	r, err := resolveModel(ctx, c, c.SyntheticShape)
	if err != nil {
		return nil, fmt.Errorf("SYNTHETIC_MODEL: %w", err)
	}
	chat, err := resolveModel(ctx, c, syntheticChatShape)
	if err != nil {
		return nil, fmt.Errorf("synthetic chat model: %w", err)
	}
	chat.Name = syntheticChatName
	return []modelRef{r, chat}, nil
}

// newEngine initialises llama.cpp and loads refs.
func newEngine(c config.Config, log *slog.Logger, refs []modelRef) (*engine.Engine, error) {
	llama.SetLogger(log.With(slog.String("component", "llama.cpp")))
	b, err := llama.New(llama.Config{BackendDir: c.GGMLBackendDir})
	if err != nil {
		return nil, fmt.Errorf("GGML_BACKEND_DIR: %w", err)
	}
	e := engine.New(b, log)
	for _, r := range refs {
		start := time.Now()
		_, err := e.Load(engine.ModelSpec{
			Name:  r.Name,
			Path:  r.Path,
			Load:  engine.LoadOptions{NGPULayers: c.NGPULayers, UseMmap: c.ModelMmap},
			Sched: schedConfig(c, r, log),
		}, nil)
		if err != nil {
			e.Close()
			return nil, err
		}
		log.Info("model loaded", slog.String("model", r.Name), slog.Bool("synthetic", r.Synthetic), slog.Duration("took", time.Since(start)))
	}
	for _, name := range unloadedSplits(c, refs) {
		log.Warn("MODEL_PROMPT_SPLIT names a model that is not loaded", slog.String("model", name))
	}
	return e, nil
}

// unloadedSplits lists the models of MODEL_PROMPT_SPLIT that are not among
// refs, sorted: a misspelt name would otherwise leave its model uncapped
// without a word.
func unloadedSplits(c config.Config, refs []modelRef) []string {
	var out []string
	for name := range c.PromptSplitByModel {
		if !slices.ContainsFunc(refs, func(r modelRef) bool { return r.Name == name }) {
			out = append(out, name)
		}
	}
	slices.Sort(out)
	return out
}

// schedConfig is the engine configuration of model r: the engine settings
// of c, with the model's own prompt budget (MODEL_PROMPT_BUDGET_MS) where
// it has one, else ENGINE_PROMPT_BUDGET_MS, and its token caps
// (MODEL_PROMPT_SPLIT), none where it has none.
func schedConfig(c config.Config, r modelRef, log *slog.Logger) engine.Config {
	budget, ok := c.PromptBudgetByModel[r.Name]
	if !ok {
		budget = c.PromptBudget
	}
	split := c.PromptSplitByModel[r.Name]
	return engine.Config{
		NParallel:        c.NParallel,
		NCtx:             c.NCtx * c.NParallel,
		NBatch:           c.NBatch,
		MixedPrefill:     c.MixedPrefill,
		NThreads:         c.NThreads,
		QueueSize:        c.QueueLength,
		CompactAfter:     compactAfter(c.CompactAfter),
		PromptCacheBytes: promptCacheBytes(c.PromptCacheMiB),
		TMaxPrompt:       time.Duration(budget) * time.Millisecond,
		Split:            engine.PromptSplit{Extra: split.Extra, Prefix: split.Prefix, Suffix: split.Suffix},
		Family:           engine.Family(r.Family),
		Logger:           log,
	}
}

// promptCacheBytes is ENGINE_PROMPT_CACHE_MIB in bytes, negative (off)
// for 0.
func promptCacheBytes(mib int) int {
	if mib == 0 {
		return -1
	}
	return mib << 20
}

func runModel(ctx context.Context, args []string) error {
	if len(args) == 0 {
		fmt.Fprintln(os.Stderr, "usage: code4me model list | pull NAME | synth [--shape S] [--type T] | add PATH [--name N] [--family F]")
		return errUsage
	}
	cfg, err := loadConfig()
	if err != nil {
		return err
	}
	switch args[0] {
	case "list":
		return modelList(cfg)
	case "pull":
		return modelPull(ctx, cfg, args[1:])
	case "synth":
		return modelSynth(ctx, cfg, args[1:])
	case "add":
		return modelAdd(cfg, args[1:])
	}
	fmt.Fprintf(os.Stderr, "code4me model: unknown subcommand %q\n", args[0])
	return errUsage
}

func modelList(c config.Config) error {
	tw := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tFAMILY\tPARAMS\tQUANT\tKIND\tSTATUS")
	p := &catalog.Puller{Dir: c.ModelDirectory()}
	for _, e := range catalog.All() {
		status := "not pulled"
		if _, err := os.Stat(p.Path(e)); err == nil {
			status = "pulled"
		}
		kind := "fim"
		if e.Chat {
			kind = "chat"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", e.Name, e.Family, e.Params, e.Quant, kind, status)
	}
	refs, err := readRegistry(c)
	if err != nil {
		return err
	}
	for _, r := range refs {
		fmt.Fprintf(tw, "%s\t%s\t\t\tadded\t%s\n", r.Name, r.Family, r.Path)
	}
	for _, s := range synth.Shapes() {
		fmt.Fprintf(tw, "%s\t%s\t%.2fB\tf16/q8_0\tsynthetic\trandom weights, written on first use\n", s.Name, "qwen2.5-coder", float64(s.ParamCount())/1e9)
	}
	return tw.Flush()
}

func modelPull(ctx context.Context, c config.Config, args []string) error {
	if len(args) != 1 {
		fmt.Fprintln(os.Stderr, "usage: code4me model pull NAME")
		return errUsage
	}
	e, err := catalog.Get(args[0])
	if err != nil {
		return err
	}
	p := &catalog.Puller{Dir: c.ModelDirectory()}
	tty := term.IsTerminal(int(os.Stderr.Fd()))
	lastPct := -1
	path, sum, err := p.Pull(ctx, e, func(done, total int64) {
		if tty {
			fmt.Fprintf(os.Stderr, "\r%s %s", e.Name, catalog.Bar(done, total))
			return
		}
		if total > 0 {
			if pct := int(100 * done / total); pct/10 != lastPct/10 {
				lastPct = pct
				fmt.Fprintf(os.Stderr, "%s %d%%\n", e.Name, pct)
			}
		}
	})
	if tty {
		fmt.Fprintln(os.Stderr)
	}
	if err != nil {
		return err
	}
	if e.SHA256 == "" {
		fmt.Printf("%s\nsha256 %s (pinned on first pull; later pulls and loads are checked against it)\n", path, sum)
	} else {
		fmt.Printf("%s\nsha256 %s (verified)\n", path, sum)
	}
	return nil
}

func modelSynth(ctx context.Context, c config.Config, args []string) error {
	fs := flag.NewFlagSet("model synth", flag.ContinueOnError)
	shape := fs.String("shape", "tiny", "shape: "+strings.Join(shapeNames(), ", "))
	typ := fs.String("type", "q8_0", "weight type: f16, q8_0 (written directly) or a llama.cpp quantization such as q4_k_m (quantized from f16)")
	dir := fs.String("dir", filepath.Join(c.ModelDirectory(), "synthetic"), "output directory")
	if err := fs.Parse(args); err != nil {
		return errUsage
	}
	start := time.Now()
	path, err := ensureSynthetic(ctx, *dir, *shape, *typ)
	if err != nil {
		return err
	}
	st, _ := os.Stat(path)
	fmt.Printf("%s\n%.1f MiB, %s\n", path, float64(st.Size())/(1<<20), time.Since(start).Round(time.Millisecond))
	return nil
}

// ensureSynthetic writes a synthetic model. f32, f16 and q8_0 are written
// by the synth package; other types (q4_k_m, q6_k, ...) are quantized from
// the f16 file with llama.cpp's quantize API.
func ensureSynthetic(ctx context.Context, dir, shape, typ string) (string, error) {
	switch strings.ToLower(typ) {
	case "f32", "f16", "q8_0", "":
		return synth.Ensure(ctx, dir, shape, strings.ToLower(typ))
	}
	src, err := synth.Ensure(ctx, dir, shape, "f16")
	if err != nil {
		return "", err
	}
	out := strings.Replace(src, "-f16-", "-"+strings.ToLower(typ)+"-", 1)
	if out == src {
		return "", fmt.Errorf("synthetic file name %s has no type field", src)
	}
	if _, err := os.Stat(out); err == nil {
		return out, nil
	}
	tmp := out + ".tmp"
	if err := llama.Quantize(src, tmp, typ); err != nil {
		os.Remove(tmp)
		return "", err
	}
	return out, os.Rename(tmp, out)
}

func shapeNames() []string {
	var out []string
	for _, s := range synth.Shapes() {
		out = append(out, s.Name)
	}
	return out
}

func modelAdd(c config.Config, args []string) error {
	fs := flag.NewFlagSet("model add", flag.ContinueOnError)
	name := fs.String("name", "", "name to load it by (default: file name)")
	family := fs.String("family", "", "prompt family (default: detected): qwen2.5-coder, deepseek-coder, starcoder2, codellama, codestral")
	// Accept the path before or after the flags.
	var path string
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		path, args = args[0], args[1:]
	}
	if err := fs.Parse(args); err != nil {
		return errUsage
	}
	if path == "" && fs.NArg() == 1 {
		path = fs.Arg(0)
	}
	if path == "" {
		fmt.Fprintln(os.Stderr, "usage: code4me model add PATH [--name N] [--family F]")
		return errUsage
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return err
	}
	if _, err := gguf.Open(abs); err != nil {
		return fmt.Errorf("%s is not a readable GGUF model: %w", path, err)
	}
	if *name == "" {
		*name = strings.TrimSuffix(filepath.Base(abs), ".gguf")
	}
	refs, err := readRegistry(c)
	if err != nil {
		return err
	}
	refs = slices.DeleteFunc(refs, func(r modelRef) bool { return r.Name == *name })
	refs = append(refs, modelRef{Name: *name, Path: abs, Family: *family})
	if err := writeRegistry(c, refs); err != nil {
		return err
	}
	fmt.Printf("added %s (%s)\n", *name, abs)
	return nil
}

// compactAfter is ENGINE_COMPACT_AFTER_SECONDS as engine.Config wants it:
// 0 (off) becomes negative.
func compactAfter(seconds int) time.Duration {
	if seconds == 0 {
		return -1
	}
	return time.Duration(seconds) * time.Second
}
