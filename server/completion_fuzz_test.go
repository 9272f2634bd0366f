package server

import "testing"

// FuzzFeedback: the body of POST /api/completion/feedback and of the
// completion_feedback frame gives feedback or a 422, never both or
// neither; accepted feedback is the body as encoding/json reads it, its
// instants RFC 3339 strings or Unix milliseconds of the years 1 to 9999 (UTC: what Postgres stores and JSON writes back).
func FuzzFeedback(f *testing.F) {
	for _, b := range append([]string{
		`{"meta_query_id":"0b5e3c4e-8d3c-4c59-9d3e-2f1c2a3b4c5d","model_id":1,"was_accepted":true,"ground_truth":"x = 1","shown_at":["2024-01-02T03:04:05Z",1700000000000]}`,
		`{"meta_query_id":"0b5e3c4e8d3c4c599d3e2f1c2a3b4c5d","model_id":0,"was_accepted":false}`,
		`{"meta_query_id":"{0b5e3c4e-8d3c-4c59-9d3e-2f1c2a3b4c5d}","model_id":1.0,"was_accepted":1,"shown_at":[253402300800000,-62135596800001,"2024-13-01T00:00:00Z",null]}`,
		`{"meta_query_id":"0b5e3c4e-8d3c-4c59-9d3e-2f1c2a3b4c5d","model_id":1,"was_accepted":true,"shown_at":["9999-12-31T23:59:59-01:00","0001-01-01T00:00:00+01:00"]}`,
		`{"meta_query_id":null,"model_id":-1,"was_accepted":"true","ground_truth":null,"shown_at":"now"}`,
	}, fuzzBodies...) {
		f.Add([]byte(b))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		fl, err := jsonBytes(body)
		if err != nil {
			checkValidation(t, err, body)
			return
		}
		fb := parseFeedback(fl)
		if err := fl.err(); err != nil {
			checkValidation(t, err, body)
			return
		}
		doc := decodeDoc(t, body)
		if s, _ := doc["meta_query_id"].(string); uuidOf(s) != fb.MetaQueryID {
			t.Fatalf("meta_query_id = %v, body says %#v", fb.MetaQueryID, doc["meta_query_id"])
		}
		checkInt(t, "model_id", fb.ModelID, doc["model_id"], 0)
		if b, ok := doc["was_accepted"].(bool); ok && b != fb.WasAccepted {
			t.Fatalf("was_accepted = %v, body says %v", fb.WasAccepted, b)
		}
		if gt := doc["ground_truth"]; gt != nil {
			checkText(t, "ground_truth", fb.GroundTruth, gt, true)
		}
		shown, _ := doc["shown_at"].([]any)
		if len(shown) != len(fb.ShownAt) {
			t.Fatalf("shown_at = %v, body says %#v", fb.ShownAt, doc["shown_at"])
		}
		for _, ts := range fb.ShownAt {
			if y := ts.UTC().Year(); y < 1 || y > 9999 {
				t.Fatalf("shown_at %v accepted", ts)
			}
		}
	})
}
