package server

import (
	"context"
	"fmt"
	"testing"

	"github.com/code4me/code4me/internal/remote"
	"github.com/code4me/code4me/internal/testenv"
)

// TestRemoteWorkerMemory: a worker records the memory of each model it
// serves (the bytes of its weights and its KV cache's cells, as its engine
// reports them), and an API node's admin API and registry give them per
// model and summed per worker.
func TestRemoteWorkerMemory(t *testing.T) {
	names := uniqueNames("mem-coder", "mem-chat")
	eng := workerEngine(t, names...)
	w := startTestWorker(t, eng)
	e := newRemoteEnv(t)
	admin, _ := e.newAdmin()

	wantWeights, wantCells := map[string]float64{}, map[string]float64{}
	var sumWeights, sumCells float64
	for _, st := range eng.Stats() {
		if st.Info.SizeBytes == 0 || st.NCtx == 0 {
			t.Fatalf("engine reports %s with %d weight bytes and %d KV cells", st.Model, st.Info.SizeBytes, st.NCtx)
		}
		wantWeights[st.Model], wantCells[st.Model] = float64(st.Info.SizeBytes), float64(st.NCtx)
		sumWeights += float64(st.Info.SizeBytes)
		sumCells += float64(st.NCtx)
	}

	got := admin.expect("GET", "/api/admin/workers/"+w.ID().String(), nil, 200).body
	if got["weights_bytes"] != sumWeights || got["kv_cells"] != sumCells {
		t.Errorf("worker's weights_bytes, kv_cells = %v, %v; want %v, %v", got["weights_bytes"], got["kv_cells"], sumWeights, sumCells)
	}
	ms := asList(got["models"])
	if len(ms) != len(names) {
		t.Fatalf("worker's models = %v, want %v", ms, names)
	}
	for _, m := range ms {
		name, _ := m["name"].(string)
		if m["weights_bytes"] != wantWeights[name] || m["kv_cells"] != wantCells[name] {
			t.Errorf("model %s: weights_bytes %v, kv_cells %v; want %v, %v", name, m["weights_bytes"], m["kv_cells"],
				wantWeights[name], wantCells[name])
		}
	}
	list := asList(admin.expect("GET", fmt.Sprintf("/api/admin/workers?alive=true&model_id=%d", e.ids[names[0]]), nil, 200).body["items"])
	if len(list) != 1 || list[0]["weights_bytes"] != sumWeights {
		t.Errorf("alive workers of %s = %v", names[0], list)
	}

	// The registry API nodes read (and /api/ping lists) carries them too.
	c, err := remote.NewClient(context.Background(), testenv.Pool(t), testenv.Redis(t), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	rows, err := c.Registry(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	seen := 0
	for _, r := range rows {
		if r.WorkerID != w.ID() {
			continue
		}
		seen++
		if r.WeightsBytes == nil || r.KvCells == nil || float64(*r.WeightsBytes) != wantWeights[r.ModelName] ||
			float64(*r.KvCells) != wantCells[r.ModelName] {
			t.Errorf("registry row of %s: weights_bytes %v, kv_cells %v", r.ModelName, r.WeightsBytes, r.KvCells)
		}
	}
	if seen != len(names) {
		t.Errorf("registry lists %d models of the worker, want %d", seen, len(names))
	}
}
