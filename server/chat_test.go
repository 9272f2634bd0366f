package server

import (
	"strings"
	"testing"

	"github.com/google/uuid"
)

func chatBody(ids []int64, chatID string, msgs ...[2]string) map[string]any {
	m := make([]any, len(msgs))
	for i, x := range msgs {
		m[i] = []string{x[0], x[1]}
	}
	return map[string]any{"model_ids": ids, "chat_id": chatID, "messages": m,
		"context": map[string]any{"prefix": "def f():\n    ", "suffix": "\n", "file_name": "f.py"}}
}

// TestChat: a turn answers with the chat model and an error item for a
// completion model; messages are stored (redacted) and the history shows
// the user's message; pages below 1 are 422; only the owner deletes, and
// deletion removes every row of the chat.
func TestChat(t *testing.T) {
	e := newPluginEnv(t, nil)
	c := e.member("chat@example.com")
	instruct, coder := e.ids["tiny-instruct"], e.ids["tiny-coder"]
	chatID := uuid.NewString()
	aws, gh, _, _ := plantedSecrets()
	r := c.expect("POST", "/api/chat/request", chatBody([]int64{instruct, coder}, chatID,
		[2]string{"system", "You are terse."}, [2]string{"user", "Why does " + aws + " fail?"}), 200)
	if r.body["chat_id"] != chatID || r.body["title"] == "" {
		t.Fatalf("chat = %s", r.raw)
	}
	h := r.body["history"].([]any)[0].(map[string]any)
	um := h["user_message"].(map[string]any)
	if !strings.HasPrefix(um["content"].(string), "Why does <redacted:aws-access-token>") || !strings.HasPrefix(um["timestamp"].(string), "20") {
		t.Fatalf("user message = %v", um)
	}
	ans := h["assistant_responses"].([]any)
	if len(ans) != 2 || ans[0].(map[string]any)["model_name"] != "tiny-instruct" || ans[0].(map[string]any)["completion"] == nil ||
		ans[1].(map[string]any)["message"] != "Model is not a ChatCompletionModel" {
		t.Fatalf("answers = %v", ans)
	}
	// The prompt used the ChatML template and never carried the secret.
	if !strings.Contains(e.rec.all(), "<|im_start|>system\nYou are terse.") || strings.Contains(e.rec.all(), aws) {
		t.Fatal("chat prompt wrong or leaking")
	}
	// A second turn, then the history.
	c.expect("POST", "/api/chat/request", chatBody([]int64{instruct}, chatID,
		[2]string{"user", "Why does " + aws + " fail?"}, [2]string{"assistant", "no idea"}, [2]string{"user", "token " + gh}), 200)
	r = c.expect("GET", "/api/chat/get/1", nil, 200)
	items := r.body["items"].([]any)
	if r.body["page"] != float64(1) || r.body["per_page"] != float64(10) || len(items) != 1 {
		t.Fatalf("page = %s", r.raw)
	}
	hist := items[0].(map[string]any)["history"].([]any)
	if len(hist) != 2 || !strings.HasPrefix(hist[1].(map[string]any)["user_message"].(map[string]any)["content"].(string), "token <redacted:") {
		t.Fatalf("history = %v", hist)
	}
	if strings.Contains(string(r.raw), aws) || strings.Contains(string(r.raw), gh) {
		t.Fatal("secret in history")
	}
	if n := e.count(`SELECT count(*) FROM chat_message WHERE chat_id = $1 AND (content LIKE '%' || $2 || '%' OR content LIKE '%' || $3 || '%')`, chatID, aws, gh); n != 0 {
		t.Fatal("secret stored in chat messages")
	}
	if r := c.expect("GET", "/api/chat/get/2", nil, 200); len(r.body["items"].([]any)) != 0 {
		t.Fatal(string(r.raw))
	}
	c.expect("GET", "/api/chat/get/0", nil, 422)
	c.expect("GET", "/api/chat/get/-1", nil, 422)
	c.expect("GET", "/api/chat/get/x", nil, 422)
	c.expect("POST", "/api/chat/request", chatBody([]int64{instruct}, "not-a-uuid", [2]string{"user", "hi"}), 422)
	c.expect("POST", "/api/chat/request", chatBody([]int64{instruct}, chatID, [2]string{"robot", "hi"}), 422)

	// Another user: cannot post into, read or delete the chat.
	other := e.member("other-chat@example.com")
	if r := other.expect("POST", "/api/chat/request", chatBody([]int64{instruct}, chatID, [2]string{"user", "mine now"}), 403); r.msg() != MsgNoAccessToQuery {
		t.Fatal(r.msg())
	}
	if r := other.expect("GET", "/api/chat/get/1", nil, 200); len(r.body["items"].([]any)) != 0 {
		t.Fatal("other user sees the chat")
	}
	if r := other.expect("DELETE", "/api/chat/delete/"+chatID, nil, 403); r.msg() != MsgNoAccessToQuery {
		t.Fatal(r.msg())
	}
	other.expect("DELETE", "/api/chat/delete/not-a-uuid", nil, 422)
	if r := other.expect("DELETE", "/api/chat/delete/"+uuid.NewString(), nil, 404); r.msg() != MsgQueryNotFound {
		t.Fatal(r.msg())
	}

	if r := c.expect("DELETE", "/api/chat/delete/"+chatID, nil, 200); r.msg() != MsgDeleteChat {
		t.Fatal(r.msg())
	}
	if n := e.count(`SELECT (SELECT count(*) FROM chat WHERE chat_id = $1) + (SELECT count(*) FROM meta_query WHERE chat_id = $1) +
		(SELECT count(*) FROM chat_message WHERE chat_id = $1)`, chatID); n != 0 {
		t.Fatalf("%d rows left after delete", n)
	}
	if n := e.count(`SELECT count(*) FROM generation g JOIN meta_query m USING (meta_query_id) JOIN users u USING (user_id) WHERE u.email = 'chat@example.com'`); n != 0 {
		t.Fatalf("%d generations left after delete", n)
	}
	c.expect("DELETE", "/api/chat/delete/"+chatID, nil, 404)
}
