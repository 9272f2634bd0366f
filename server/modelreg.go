package server

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"sync/atomic"

	"github.com/code4me/code4me/engine"
	"github.com/code4me/code4me/models"
)

// RegisteredModel is one engine model as the plugin API knows it: the
// model_id plugins send, and what the model may be used for.
type RegisteredModel struct {
	ID     int64  // model.model_id
	Name   string // the engine's model name, also model.name
	Family engine.Family
	// Chat marks an instruction-tuned model: it serves /api/chat and is
	// refused (an error item) by /api/completion, by the model's flag, not its name.
	Chat      bool
	Synthetic bool
	SHA256    string
	// ChatTemplate is the model's chat template text (worker tier only:
	// an in-process engine reads it from the model).
	ChatTemplate string
}

// Completion reports whether the model can fill in the middle.
func (m RegisteredModel) Completion() bool { return !m.Chat && m.Family != engine.FamilyNone }

// ModelRegistry maps model ids to the engine's loaded models. With an
// in-process engine it is built once at start-up; with the worker tier it
// follows the models live workers serve (Replace). It is safe for
// concurrent use.
type ModelRegistry struct {
	snap atomic.Pointer[modelSnapshot]
}

// modelSnapshot is the registry's content at one time.
type modelSnapshot struct {
	byID  map[int64]RegisteredModel
	order []int64
}

// NewModelRegistry returns a registry of list.
func NewModelRegistry(list []RegisteredModel) *ModelRegistry {
	r := &ModelRegistry{}
	r.Replace(list)
	return r
}

// Replace makes list the registry's models.
func (r *ModelRegistry) Replace(list []RegisteredModel) {
	sn := &modelSnapshot{byID: map[int64]RegisteredModel{}}
	for _, m := range list {
		if _, dup := sn.byID[m.ID]; !dup {
			sn.order = append(sn.order, m.ID)
		}
		sn.byID[m.ID] = m
	}
	slices.Sort(sn.order)
	r.snap.Store(sn)
}

func (r *ModelRegistry) load() *modelSnapshot {
	if r == nil {
		return nil
	}
	return r.snap.Load()
}

// instructName matches names of instruction-tuned (chat) models.
var instructName = regexp.MustCompile(`(?i)(^|[-_. ])(instruct|chat|it)([-_. ]|$)`)

// IsChatName is RegisterModels' default rule: a model whose name says
// "instruct", "chat" or "it" as a word is a chat model.
func IsChatName(name string) bool { return instructName.MatchString(name) }

// RegisterModels records every model loaded in eng in the model table
// (ModelUpsert: the same name and file hash keep their id) and returns the
// registry. chat says which models are chat models; nil means IsChatName.
// A backend that reports no file hash gets the sha256 of the model path.
func RegisterModels(ctx context.Context, db models.DBTX, eng *engine.Engine, chat func(name string) bool, lim Limits) (*ModelRegistry, error) {
	var list []RegisteredModel
	if eng == nil {
		return NewModelRegistry(nil), nil
	}
	if chat == nil {
		chat = IsChatName
	}
	q := models.New()
	for _, st := range eng.Stats() {
		sum := strings.ToLower(st.Info.SHA256)
		if len(sum) != 64 {
			h := sha256.Sum256([]byte("path:" + st.Info.Path))
			sum = hex.EncodeToString(h[:])
		}
		isChat := chat(st.Model)
		params, _ := json.Marshal(map[string]any{
			"max_new_tokens": lim.tokens(isChat), "temperature": defaultSampling.Temperature,
			"top_p": defaultSampling.TopP, "top_k": defaultSampling.TopK, "repetition_penalty": defaultSampling.RepeatPenalty,
			"n_ctx_per_slot": st.NCtxPerSlot, "slots": st.Slots,
		})
		templates, _ := json.Marshal(map[string]any{"fim_family": string(st.Family), "chat_template": chatTemplateName(st.Family, isChat)})
		size := int64(st.Info.SizeBytes)
		row, err := q.ModelUpsert(ctx, db, models.ModelUpsertParams{
			Name: st.Model, Family: string(st.Family), FileSha256: sum, FileSize: &size,
			Parameters: params, PromptTemplates: templates, IsChat: isChat, IsSynthetic: st.Info.Synthetic,
		})
		if err != nil {
			return nil, fmt.Errorf("register model %q: %w", st.Model, err)
		}
		list = append(list, RegisteredModel{ID: row.ModelID, Name: st.Model, Family: st.Family, Chat: isChat,
			Synthetic: st.Info.Synthetic, SHA256: sum})
	}
	return NewModelRegistry(list), nil
}

// Get returns the model with that id.
func (r *ModelRegistry) Get(id int64) (RegisteredModel, bool) {
	sn := r.load()
	if sn == nil {
		return RegisteredModel{}, false
	}
	m, ok := sn.byID[id]
	return m, ok
}

// List returns every registered model by id.
func (r *ModelRegistry) List() []RegisteredModel {
	sn := r.load()
	if sn == nil {
		return nil
	}
	out := make([]RegisteredModel, 0, len(sn.order))
	for _, id := range sn.order {
		out = append(out, sn.byID[id])
	}
	return out
}

// ByName returns the registered model with that engine name.
func (r *ModelRegistry) ByName(name string) (RegisteredModel, bool) {
	for _, m := range r.List() {
		if m.Name == name {
			return m, true
		}
	}
	return RegisteredModel{}, false
}
