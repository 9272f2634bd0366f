package db_test

import (
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	pgvector "github.com/pgvector/pgvector-go"

	"github.com/code4me/code4me/internal/db"
	"github.com/code4me/code4me/models"
)

var q = models.New()

func ptr[T any](v T) *T { return &v }

// result carries a query's value and error so one line can run the query
// and fail the test on error: ok(q.X(...)).get(t).
type result[T any] struct {
	v   T
	err error
}

func ok[T any](v T, err error) result[T] { return result[T]{v, err} }

func (r result[T]) get(t *testing.T) T {
	t.Helper()
	if r.err != nil {
		t.Fatal(r.err)
	}
	return r.v
}

type fixture struct {
	pool    *pgxpool.Pool
	user    models.User
	session models.Session
	project models.Project
	model   models.Model
}

func newFixture(t *testing.T, pool *pgxpool.Pool, email string) fixture {
	t.Helper()
	ctx := testCtx(t)
	f := fixture{pool: pool}
	f.user = ok(q.UserCreate(ctx, pool, models.UserCreateParams{
		Email: email, Name: "Ada", PasswordHash: "$argon2id$v=19$m=65536,t=1,p=2$c2FsdA$aGFzaA",
		ConfigID: 1, Preference: json.RawMessage(`{"store_context": true}`),
	})).get(t)
	f.session = ok(q.SessionCreate(ctx, pool, models.SessionCreateParams{
		SessionID: uuid.New(), UserID: f.user.UserID, UserAgent: ptr("test"),
	})).get(t)
	f.project = ok(q.ProjectCreate(ctx, pool, models.ProjectCreateParams{ProjectName: "p", CreatedBy: f.user.UserID})).get(t)
	if err := q.ProjectMemberAdd(ctx, pool, models.ProjectMemberAddParams{ProjectID: f.project.ProjectID, UserID: f.user.UserID, Role: "owner"}); err != nil {
		t.Fatal(err)
	}
	f.model = ok(q.ModelUpsert(ctx, pool, models.ModelUpsertParams{
		Name: "tiny", Family: "qwen2.5-coder", FileSha256: strings.Repeat("ab", 32),
		Parameters: json.RawMessage(`{"max_new_tokens": 64}`), PromptTemplates: json.RawMessage(`{}`), IsSynthetic: true,
	})).get(t)
	return f
}

// completion stores a completion query with context, telemetry and one
// generation, in one transaction, as the completion handler does.
func (f fixture) completion(t *testing.T) uuid.UUID {
	t.Helper()
	ctx := testCtx(t)
	id := uuid.New()
	err := db.WithTx(ctx, f.pool, func(tx pgx.Tx) error {
		if _, err := q.MetaQueryCreate(ctx, tx, models.MetaQueryCreateParams{
			MetaQueryID: id, QueryType: "completion", UserID: f.user.UserID,
			SessionID: &f.session.SessionID, ProjectID: &f.project.ProjectID,
			ConfigID: f.user.ConfigID, Client: "plugin", ServerVersion: "test", RequestedAt: time.Now(),
			TotalServingMs: ptr(12.5),
		}); err != nil {
			return err
		}
		if err := q.CompletionQueryCreate(ctx, tx, models.CompletionQueryCreateParams{MetaQueryID: id, StopSequences: []string{"\n\n"}}); err != nil {
			return err
		}
		if err := q.ContextCreate(ctx, tx, models.ContextCreateParams{MetaQueryID: id, Prefix: "def f(", Suffix: ")", FileName: ptr("main.py")}); err != nil {
			return err
		}
		if _, err := q.QueryContextFileCreate(ctx, tx, []models.QueryContextFileCreateParams{
			{MetaQueryID: id, Ordinal: 0, FileName: "utils.py", ChangeIndex: ptr(int32(2)), Content: ptr("def g(): pass")},
		}); err != nil {
			return err
		}
		if err := q.ContextualTelemetryCreate(ctx, tx, models.ContextualTelemetryCreateParams{
			MetaQueryID: id, VersionID: 1, TriggerTypeID: 2, LanguageID: 47, CaretLine: ptr(int32(3)), RelativeDocumentPosition: ptr(0.5),
		}); err != nil {
			return err
		}
		if err := q.BehavioralTelemetryCreate(ctx, tx, models.BehavioralTelemetryCreateParams{MetaQueryID: id, TypingSpeed: ptr(210.0)}); err != nil {
			return err
		}
		return q.GenerationCreate(ctx, tx, models.GenerationCreateParams{
			MetaQueryID: id, ModelID: f.model.ModelID, Completion: "x):", GenerationTimeMs: 40,
			ShownAt: []time.Time{time.Now()}, Confidence: ptr(0.9), Logprobs: []float64{-0.1, -0.2},
			StopReason: ptr("stop"), PrefillMs: ptr(10.0), DecodeMs: ptr(30.0), TokensCached: ptr(int32(100)),
			Sampler: json.RawMessage(`{"temperature": 0.2, "top_p": 0.95}`), Seed: ptr(int64(42)), TemplateVersion: ptr("qwen-fim-1"),
		})
	})
	if err != nil {
		t.Fatalf("store completion: %v", err)
	}
	return id
}

func count(t *testing.T, pool *pgxpool.Pool, sql string, args ...any) int64 {
	t.Helper()
	var n int64
	if err := pool.QueryRow(testCtx(t), sql, args...).Scan(&n); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
	return n
}

func TestUserQueries(t *testing.T) {
	pool := migratedPool(t)
	ctx := testCtx(t)
	f := newFixture(t, pool, "ada@example.com")

	if !f.user.StoreContext || !f.user.StoreContextualTelemetry || !f.user.StoreBehavioralTelemetry {
		t.Errorf("consent columns = %v %v %v, want all true", f.user.StoreContext, f.user.StoreContextualTelemetry, f.user.StoreBehavioralTelemetry)
	}
	got, err := q.UserGetByEmail(ctx, pool, "ADA@example.com")
	if err != nil || got.UserID != f.user.UserID {
		t.Fatalf("UserGetByEmail = %v, %v", got.UserID, err)
	}
	if _, err := q.UserGetByEmail(ctx, pool, "nobody@example.com"); !errors.Is(db.Translate(err), db.ErrNotFound) {
		t.Errorf("unknown email: %v, want ErrNotFound", err)
	}

	_, err = q.UserCreate(ctx, pool, models.UserCreateParams{Email: "Ada@Example.com", Name: "Other", PasswordHash: "h", ConfigID: 1, Preference: json.RawMessage(`{}`)})
	if !db.IsUniqueViolation(err, "users_email_key") {
		t.Errorf("duplicate email: %v, want unique violation of users_email_key", err)
	}
	if taken := ok(q.UserEmailTaken(ctx, pool, models.UserEmailTakenParams{Email: "ada@example.com", UserID: uuid.Nil})).get(t); !taken {
		t.Error("UserEmailTaken = false for an existing email")
	}
	if taken := ok(q.UserEmailTaken(ctx, pool, models.UserEmailTakenParams{Email: "ada@example.com", UserID: f.user.UserID})).get(t); taken {
		t.Error("UserEmailTaken = true for the user's own email")
	}
	_, err = q.UserCreate(ctx, pool, models.UserCreateParams{Email: "bob@example.com", Name: "Bob", PasswordHash: "h", ConfigID: 99, Preference: json.RawMessage(`{}`)})
	if !db.IsForeignKeyViolation(err, "") {
		t.Errorf("unknown config: %v, want foreign-key violation", err)
	}

	// Changing consent stamps consent_updated_at; other preference changes do not.
	u := ok(q.UserUpdatePreference(ctx, pool, models.UserUpdatePreferenceParams{
		UserID: f.user.UserID, Preference: json.RawMessage(`{"store_context": true, "theme": "dark"}`)})).get(t)
	if u.ConsentUpdatedAt != nil {
		t.Errorf("consent_updated_at set by a non-consent change")
	}
	u = ok(q.UserUpdatePreference(ctx, pool, models.UserUpdatePreferenceParams{
		UserID: f.user.UserID, Preference: json.RawMessage(`{"store_context": false, "store_contextual_telemetry": false}`)})).get(t)
	if u.StoreContext || u.StoreContextualTelemetry || !u.StoreBehavioralTelemetry || u.ConsentUpdatedAt == nil {
		t.Errorf("after opting out: store_context=%v contextual=%v behavioral=%v consent_updated_at=%v",
			u.StoreContext, u.StoreContextualTelemetry, u.StoreBehavioralTelemetry, u.ConsentUpdatedAt)
	}
	if b, _ := json.Marshal(u); strings.Contains(string(b), "argon2") {
		t.Errorf("user JSON carries the password hash: %s", b)
	}

	u = ok(q.UserUpdateProfile(ctx, pool, models.UserUpdateProfileParams{UserID: f.user.UserID, Email: ptr("ADA2@example.com")})).get(t)
	if u.Email != "ada2@example.com" || u.Name != "Ada" {
		t.Errorf("after UserUpdateProfile email=%q name=%q", u.Email, u.Name)
	}
}

func TestCompletionRoundTrip(t *testing.T) {
	pool := migratedPool(t)
	ctx := testCtx(t)
	f := newFixture(t, pool, "ada@example.com")

	// Registering the same file again keeps its id; a new file is a new row.
	again := ok(q.ModelUpsert(ctx, pool, models.ModelUpsertParams{
		Name: "tiny", Family: "qwen2.5-coder", FileSha256: strings.Repeat("ab", 32),
		Parameters: json.RawMessage(`{}`), PromptTemplates: json.RawMessage(`{}`), IsSynthetic: true})).get(t)
	if again.ModelID != f.model.ModelID {
		t.Errorf("ModelUpsert of the same file: id %d, want %d", again.ModelID, f.model.ModelID)
	}
	other := ok(q.ModelUpsert(ctx, pool, models.ModelUpsertParams{
		Name: "tiny", Family: "qwen2.5-coder", FileSha256: strings.Repeat("cd", 32),
		Parameters: json.RawMessage(`{}`), PromptTemplates: json.RawMessage(`{}`)})).get(t)
	if other.ModelID == f.model.ModelID {
		t.Error("a new file under the same name reused the model id")
	}

	if ok := ok(q.ProjectMemberCheck(ctx, pool, models.ProjectMemberCheckParams{ProjectID: f.project.ProjectID, UserID: f.user.UserID})).get(t); !ok {
		t.Error("ProjectMemberCheck = false for the owner")
	}
	if ok := ok(q.ProjectMemberCheck(ctx, pool, models.ProjectMemberCheckParams{ProjectID: f.project.ProjectID, UserID: uuid.New()})).get(t); ok {
		t.Error("ProjectMemberCheck = true for a stranger")
	}
	ids := ok(q.TelemetryIDsCheck(ctx, pool, models.TelemetryIDsCheckParams{VersionID: 4, TriggerTypeID: 3, LanguageID: 180})).get(t)
	if !ids.VersionOk || !ids.TriggerTypeOk || ids.LanguageOk {
		t.Errorf("TelemetryIDsCheck(4, 3, 180) = %+v", ids)
	}
	if ok := ok(q.LanguageExists(ctx, pool, 179)).get(t); !ok {
		t.Error("LanguageExists(179) = false")
	}

	id := f.completion(t)
	mq := ok(q.MetaQueryGetByID(ctx, pool, id)).get(t)
	if mq.UserID == nil || *mq.UserID != f.user.UserID || mq.ConfigID != 1 || mq.QueryType != "completion" {
		t.Errorf("meta query = %+v", mq)
	}
	gens := ok(q.GenerationListByMetaQuery(ctx, pool, id)).get(t)
	if len(gens) != 1 || gens[0].ModelName != "tiny" || gens[0].WasAccepted || *gens[0].Seed != 42 || len(gens[0].ShownAt) != 1 {
		t.Fatalf("generations = %+v", gens)
	}

	shown := time.Now().Add(time.Second)
	n := ok(q.GenerationUpdateFeedback(ctx, pool, models.GenerationUpdateFeedbackParams{
		MetaQueryID: id, ModelID: f.model.ModelID, WasAccepted: true, ShownAt: &shown})).get(t)
	if n != 1 {
		t.Fatalf("GenerationUpdateFeedback updated %d rows, want 1", n)
	}
	g := ok(q.GenerationGet(ctx, pool, models.GenerationGetParams{MetaQueryID: id, ModelID: f.model.ModelID})).get(t)
	if !g.WasAccepted || g.FeedbackAt == nil || len(g.ShownAt) != 2 {
		t.Errorf("after feedback: accepted=%v feedback_at=%v shown_at=%v", g.WasAccepted, g.FeedbackAt, g.ShownAt)
	}
	if n := ok(q.GenerationUpdateFeedback(ctx, pool, models.GenerationUpdateFeedbackParams{
		MetaQueryID: id, ModelID: other.ModelID, WasAccepted: true})).get(t); n != 0 {
		t.Errorf("feedback for a model that did not answer updated %d rows", n)
	}

	for range 2 {
		ok(q.GroundTruthCreate(ctx, pool, models.GroundTruthCreateParams{MetaQueryID: id, GroundTruth: "x):\n"})).get(t)
	}
	if gts := ok(q.GroundTruthListByMetaQuery(ctx, pool, id)).get(t); len(gts) != 2 {
		t.Errorf("%d ground truths, want 2", len(gts))
	}

	// A telemetry row with an unknown language is rejected by its foreign key.
	bad := uuid.New()
	err := db.WithTx(ctx, pool, func(tx pgx.Tx) error {
		if _, err := q.MetaQueryCreate(ctx, tx, models.MetaQueryCreateParams{
			MetaQueryID: bad, QueryType: "completion", UserID: f.user.UserID, ConfigID: 1,
			Client: "plugin", ServerVersion: "test", RequestedAt: time.Now()}); err != nil {
			return err
		}
		return q.ContextualTelemetryCreate(ctx, tx, models.ContextualTelemetryCreateParams{
			MetaQueryID: bad, VersionID: 1, TriggerTypeID: 1, LanguageID: 999})
	})
	if !db.IsForeignKeyViolation(err, "") {
		t.Errorf("unknown language id: %v, want foreign-key violation", err)
	}
	if _, err := q.MetaQueryGetByID(ctx, pool, bad); !errors.Is(db.Translate(err), db.ErrNotFound) {
		t.Errorf("the rolled-back query exists: %v", err)
	}

	// Deleting the query removes everything recorded with it.
	ok(q.MetaQueryDelete(ctx, pool, id)).get(t)
	for _, table := range []string{"completion_query", "context", "query_context_file", "contextual_telemetry", "behavioral_telemetry", "generation", "ground_truth"} {
		if n := count(t, pool, "SELECT count(*) FROM "+table); n != 0 {
			t.Errorf("%s has %d rows after its query was deleted", table, n)
		}
	}
}

func TestChatQueries(t *testing.T) {
	pool := migratedPool(t)
	ctx := testCtx(t)
	f := newFixture(t, pool, "ada@example.com")
	g := newFixture(t, pool, "grace@example.com")

	chatID := uuid.New()
	chat := ok(q.ChatUpsert(ctx, pool, models.ChatUpsertParams{ChatID: chatID, ProjectID: f.project.ProjectID, UserID: f.user.UserID, Title: "How?"})).get(t)
	if chat.Title != "How?" {
		t.Errorf("title = %q", chat.Title)
	}
	if _, err := q.ChatUpsert(ctx, pool, models.ChatUpsertParams{ChatID: chatID, ProjectID: f.project.ProjectID, UserID: f.user.UserID, Title: "again"}); err != nil {
		t.Errorf("second ChatUpsert by the owner: %v", err)
	}
	if _, err := q.ChatUpsert(ctx, pool, models.ChatUpsertParams{ChatID: chatID, ProjectID: g.project.ProjectID, UserID: g.user.UserID, Title: "steal"}); !errors.Is(db.Translate(err), db.ErrNotFound) {
		t.Errorf("ChatUpsert of another user's chat: %v, want ErrNotFound", err)
	}

	var turns []uuid.UUID
	for i := range 2 {
		id := uuid.New()
		turns = append(turns, id)
		err := db.WithTx(ctx, pool, func(tx pgx.Tx) error {
			if _, err := q.MetaQueryCreate(ctx, tx, models.MetaQueryCreateParams{
				MetaQueryID: id, QueryType: "chat", UserID: f.user.UserID, SessionID: &f.session.SessionID,
				ProjectID: &f.project.ProjectID, ChatID: &chatID, ConfigID: 1, Client: "plugin", ServerVersion: "test",
				RequestedAt: time.Now().Add(time.Duration(i) * time.Second)}); err != nil {
				return err
			}
			if err := q.ChatQueryCreate(ctx, tx, models.ChatQueryCreateParams{MetaQueryID: id}); err != nil {
				return err
			}
			if _, err := q.ChatMessageCreate(ctx, tx, models.ChatMessageCreateParams{ChatID: chatID, MetaQueryID: id, Position: 0, Role: "user", Content: "question"}); err != nil {
				return err
			}
			return q.GenerationCreate(ctx, tx, models.GenerationCreateParams{
				MetaQueryID: id, ModelID: f.model.ModelID, Completion: "answer", GenerationTimeMs: 5,
				ShownAt: []time.Time{}, Logprobs: []float64{}, Sampler: json.RawMessage(`{}`)})
		})
		if err != nil {
			t.Fatalf("store chat turn: %v", err)
		}
	}
	// Ground truth is accepted for chat queries too (Code4me V2 lost it).
	ok(q.GroundTruthCreate(ctx, pool, models.GroundTruthCreateParams{MetaQueryID: turns[0], GroundTruth: "used it"})).get(t)

	page := ok(q.ChatGetPage(ctx, pool, models.ChatGetPageParams{UserID: f.user.UserID, ProjectID: f.project.ProjectID, PageSize: 10, PageOffset: 0})).get(t)
	if len(page) != 1 || page[0].ChatID != chatID {
		t.Fatalf("ChatGetPage = %+v", page)
	}
	if other := ok(q.ChatGetPage(ctx, pool, models.ChatGetPageParams{UserID: g.user.UserID, ProjectID: f.project.ProjectID, PageSize: 10})).get(t); len(other) != 0 {
		t.Errorf("another user sees %d chats", len(other))
	}
	turnRows := ok(q.ChatTurnListByChats(ctx, pool, []uuid.UUID{chatID})).get(t)
	if len(turnRows) != 2 || turnRows[0].MetaQueryID != turns[0] {
		t.Errorf("ChatTurnListByChats = %+v", turnRows)
	}
	if msgs := ok(q.ChatMessageListByChats(ctx, pool, []uuid.UUID{chatID})).get(t); len(msgs) != 2 || msgs[0].Content != "question" {
		t.Errorf("ChatMessageListByChats = %+v", msgs)
	}

	if n := ok(q.ChatDelete(ctx, pool, models.ChatDeleteParams{ChatID: chatID, UserID: g.user.UserID, ProjectID: f.project.ProjectID})).get(t); n != 0 {
		t.Errorf("another user deleted the chat")
	}
	if n := ok(q.ChatDelete(ctx, pool, models.ChatDeleteParams{ChatID: chatID, UserID: f.user.UserID, ProjectID: f.project.ProjectID})).get(t); n != 1 {
		t.Fatalf("ChatDelete deleted %d rows, want 1", n)
	}
	for _, table := range []string{"meta_query", "chat_query", "chat_message", "generation", "ground_truth"} {
		if n := count(t, pool, "SELECT count(*) FROM "+table); n != 0 {
			t.Errorf("%s has %d orphan rows after the chat was deleted", table, n)
		}
	}
}

func TestDeleteUser(t *testing.T) {
	t.Run("pseudonymise", func(t *testing.T) {
		pool := migratedPool(t)
		ctx := testCtx(t)
		f := newFixture(t, pool, "ada@example.com")
		id := f.completion(t)
		key := sha256.Sum256([]byte("c4m_secret"))
		ok(q.ApiKeyCreate(ctx, pool, models.ApiKeyCreateParams{UserID: f.user.UserID, Name: "cli", KeyHash: key[:], Prefix: "c4m_sec"})).get(t)

		if _, err := db.DeleteUser(ctx, pool, f.user.UserID, false); err != nil {
			t.Fatal(err)
		}
		mq := ok(q.MetaQueryGetByID(ctx, pool, id)).get(t)
		if mq.UserID != nil {
			t.Errorf("query keeps user_id %v", mq.UserID)
		}
		if n := count(t, pool, "SELECT count(*) FROM generation"); n != 1 {
			t.Errorf("%d generations remain, want 1", n)
		}
		s := ok(q.SessionGetByID(ctx, pool, f.session.SessionID)).get(t)
		if s.UserID != nil {
			t.Errorf("session keeps user_id")
		}
		if n := count(t, pool, "SELECT count(*) FROM api_key"); n != 0 {
			t.Errorf("%d API keys survive their user", n)
		}
		if n := count(t, pool, "SELECT count(*) FROM project_users"); n != 0 {
			t.Errorf("%d memberships survive their user", n)
		}
		if _, err := db.DeleteUser(ctx, pool, f.user.UserID, false); !errors.Is(err, db.ErrNotFound) {
			t.Errorf("deleting a deleted user: %v, want ErrNotFound", err)
		}
	})
	t.Run("delete data", func(t *testing.T) {
		pool := migratedPool(t)
		ctx := testCtx(t)
		f := newFixture(t, pool, "ada@example.com")
		g := newFixture(t, pool, "grace@example.com")
		f.completion(t)
		g.completion(t)
		// Grace joins Ada's project, so it survives Ada's deletion.
		shared := ok(q.ProjectCreate(ctx, pool, models.ProjectCreateParams{ProjectName: "shared", CreatedBy: f.user.UserID})).get(t)
		for _, u := range []uuid.UUID{f.user.UserID, g.user.UserID} {
			if err := q.ProjectMemberAdd(ctx, pool, models.ProjectMemberAddParams{ProjectID: shared.ProjectID, UserID: u, Role: "member"}); err != nil {
				t.Fatal(err)
			}
		}

		if _, err := db.DeleteUser(ctx, pool, f.user.UserID, true); err != nil {
			t.Fatal(err)
		}
		for sql, want := range map[string]int64{
			"SELECT count(*) FROM users":                            1,
			"SELECT count(*) FROM meta_query":                       1,
			"SELECT count(*) FROM generation":                       1,
			"SELECT count(*) FROM context":                          1,
			"SELECT count(*) FROM session":                          1,
			"SELECT count(*) FROM project":                          2, // Grace's own and the shared one
			"SELECT count(*) FROM meta_query WHERE user_id IS NULL": 0,
		} {
			if n := count(t, pool, sql); n != want {
				t.Errorf("%s = %d, want %d", sql, n, want)
			}
		}
		if _, err := q.ProjectGetByID(ctx, pool, f.project.ProjectID); !errors.Is(db.Translate(err), db.ErrNotFound) {
			t.Errorf("Ada's sole project survives: %v", err)
		}
	})
}

func TestApiKeys(t *testing.T) {
	pool := migratedPool(t)
	ctx := testCtx(t)
	f := newFixture(t, pool, "ada@example.com")
	hash := sha256.Sum256([]byte("c4m_live_key"))
	k := ok(q.ApiKeyCreate(ctx, pool, models.ApiKeyCreateParams{UserID: f.user.UserID, Name: "laptop", KeyHash: hash[:], Prefix: "c4m_liv"})).get(t)

	row := ok(q.ApiKeyGetByHash(ctx, pool, hash[:])).get(t)
	if row.ApiKey.ApiKeyID != k.ApiKeyID || row.User.UserID != f.user.UserID {
		t.Errorf("ApiKeyGetByHash = %+v", row)
	}
	if _, err := q.ApiKeyCreate(ctx, pool, models.ApiKeyCreateParams{UserID: f.user.UserID, Name: "short", KeyHash: []byte("x"), Prefix: "x"}); !db.IsCheckViolation(err, "api_key_hash_sha256") {
		t.Errorf("a key hash that is not sha256: %v, want check violation", err)
	}
	if n := ok(q.ApiKeyRevoke(ctx, pool, models.ApiKeyRevokeParams{ApiKeyID: k.ApiKeyID, UserID: uuid.New()})).get(t); n != 0 {
		t.Error("another user revoked the key")
	}
	if n := ok(q.ApiKeyRevoke(ctx, pool, models.ApiKeyRevokeParams{ApiKeyID: k.ApiKeyID, UserID: f.user.UserID})).get(t); n != 1 {
		t.Fatal("the owner could not revoke the key")
	}
	if _, err := q.ApiKeyGetByHash(ctx, pool, hash[:]); !errors.Is(db.Translate(err), db.ErrNotFound) {
		t.Errorf("a revoked key still authenticates: %v", err)
	}
}

func TestStudyAssignment(t *testing.T) {
	pool := migratedPool(t)
	ctx := testCtx(t)
	f := newFixture(t, pool, "ada@example.com")
	arm := ok(q.ConfigCreate(ctx, pool, `config { models { available = [] } }`)).get(t)

	if _, err := q.StudyRunning(ctx, pool); !errors.Is(db.Translate(err), db.ErrNotFound) {
		t.Errorf("StudyRunning without a study: %v", err)
	}
	creator := f.user.UserID
	st := ok(q.StudyCreate(ctx, pool, models.StudyCreateParams{
		Name: "s", CreatedBy: &creator, StartsAt: time.Now().Add(-time.Hour), Unit: "user", Seed: 7})).get(t)
	var arms []models.StudyArm
	for i, c := range []int64{1, arm.ConfigID} {
		arms = append(arms, ok(q.StudyArmCreate(ctx, pool, models.StudyArmCreateParams{StudyID: st.StudyID,
			Name: fmt.Sprint("arm ", i), ConfigID: c, Weight: 1, IsBaseline: i == 0, Policy: []byte(`{}`)})).get(t))
	}
	// Two baselines are refused.
	if _, err := q.StudyArmCreate(ctx, pool, models.StudyArmCreateParams{StudyID: st.StudyID, Name: "again",
		ConfigID: 1, Weight: 1, IsBaseline: true, Policy: []byte(`{}`)}); !db.IsUniqueViolation(err, "study_arm_one_baseline_idx") {
		t.Errorf("second baseline: %v, want unique violation", err)
	}
	ok(q.StudySetStatus(ctx, pool, models.StudySetStatusParams{Status: "running", StudyID: st.StudyID, FromStatuses: []string{"draft"}})).get(t)
	if got := ok(q.StudyRunning(ctx, pool)).get(t); got.StudyID != st.StudyID {
		t.Errorf("StudyRunning = %v, want %v", got.StudyID, st.StudyID)
	}
	// An assignment is logged once per unit.
	for range 2 {
		if err := q.StudyAssignmentLog(ctx, pool, models.StudyAssignmentLogParams{UserID: f.user.UserID, StudyID: &st.StudyID,
			ArmID: &arms[1].ArmID, AssignedConfigID: arm.ConfigID}); err != nil {
			t.Fatal(err)
		}
	}
	if h := ok(q.ConfigAssignmentListByUser(ctx, pool, f.user.UserID)).get(t); len(h) != 1 || *h[0].ArmID != arms[1].ArmID {
		t.Errorf("assignment history = %+v, want one row for arm %d", h, arms[1].ArmID)
	}

	// Only one study may run.
	other := ok(q.StudyCreate(ctx, pool, models.StudyCreateParams{Name: "t", StartsAt: time.Now(), Unit: "user", Seed: 1})).get(t)
	_, err := q.StudySetStatus(ctx, pool, models.StudySetStatusParams{Status: "running", StudyID: other.StudyID, FromStatuses: []string{"draft"}})
	if !db.IsUniqueViolation(err, "study_one_running_idx") {
		t.Errorf("second running study: %v, want unique violation", err)
	}
	// A config in use cannot be deleted.
	if _, err := q.ConfigDelete(ctx, pool, arm.ConfigID); !db.IsForeignKeyViolation(err, "") {
		t.Errorf("deleting a config in use: %v, want foreign-key violation", err)
	}
	ended := ok(q.StudySetStatus(ctx, pool, models.StudySetStatusParams{Status: "ended", StudyID: st.StudyID,
		FromStatuses: []string{"running"}})).get(t)
	if ended.EndsAt == nil || time.Since(*ended.EndsAt) > time.Minute {
		t.Errorf("ended study's ends_at = %v, want now", ended.EndsAt)
	}
	if _, err := q.StudyRunning(ctx, pool); !errors.Is(db.Translate(err), db.ErrNotFound) {
		t.Errorf("StudyRunning after the end: %v", err)
	}
}

func TestVectorSearch(t *testing.T) {
	pool := migratedPool(t)
	ctx := testCtx(t)
	vec := func(i int) *pgvector.Vector {
		v := make([]float32, 384)
		v[i] = 1
		return ptr(pgvector.NewVector(v))
	}
	for i, lang := range []string{"go", "go", "python"} {
		ok(q.DocumentationCreate(ctx, pool, models.DocumentationCreateParams{Content: lang, Language: lang, Embedding: vec(i)})).get(t)
	}
	ok(q.DocumentationCreate(ctx, pool, models.DocumentationCreateParams{Content: "unembedded", Language: "go"})).get(t)

	hits := ok(q.DocumentationSearch(ctx, pool, models.DocumentationSearchParams{
		Query: *vec(1), MinSimilarity: 0.5, MaxResults: 10})).get(t)
	if len(hits) != 1 || hits[0].DocumentationID != 2 || hits[0].Similarity < 0.999 {
		t.Errorf("DocumentationSearch = %+v", hits)
	}
	doc := ok(q.DocumentationGetByID(ctx, pool, 1)).get(t)
	if doc.Embedding == nil || doc.Embedding.Slice()[0] != 1 {
		t.Errorf("embedding did not round-trip: %v", doc.Embedding)
	}
	if goDocs := ok(q.DocumentationList(ctx, pool, models.DocumentationListParams{Language: ptr("go"), MaxResults: 10})).get(t); len(goDocs) != 3 {
		t.Errorf("DocumentationList(go) = %d rows, want 3", len(goDocs))
	}
}
