package loadtest

import "time"

// Acked is every row the server acknowledged with a 2xx answer, with what
// was sent for it.
type Acked struct {
	Completions    []AckedCompletion
	Feedback       []AckedFeedback
	ContextUpdates []AckedContextUpdate
	Chats          []AckedChat
}

func (a *Acked) merge(b *Acked) {
	a.Completions = append(a.Completions, b.Completions...)
	a.Feedback = append(a.Feedback, b.Feedback...)
	a.ContextUpdates = append(a.ContextUpdates, b.ContextUpdates...)
	a.Chats = append(a.Chats, b.Chats...)
}

// AckedCompletion is a completion request answered 200: its meta_query,
// completion_query, context, context files and telemetry rows, and a
// generation per completion answered without error (a superseded request
// has none).
type AckedCompletion struct {
	MetaQueryID, UserID, ProjectID string
	Prefix, Suffix, FileName       string
	// ContextFiles are the project's context files when the request was
	// sent; ContextKnown is false when an edit of them got no answer since
	// (it may or may not have been applied), and their content is then not
	// checked.
	ContextFiles []ContextFileSent
	ContextKnown bool
	Contextual   Contextual
	Behavioral   Behavioral
	Generations  []AckedGeneration
}

// ContextFileSent is a context file a request named, with its content.
type ContextFileSent struct {
	Name, Content string
}

// Contextual is the contextual telemetry sent.
type Contextual struct {
	VersionID, TriggerTypeID, LanguageID int64
	FilePath                             string
	CaretLine, DocumentCharLength        int64
	RelativeDocumentPosition             float64
}

// Behavioral is the behavioural telemetry sent.
type Behavioral struct {
	TimeSinceLastShown, TimeSinceLastAccepted int64
	TypingSpeed                               float64
}

// AckedGeneration is a model's answer as the response carried it.
type AckedGeneration struct {
	ModelID    int64
	Completion string
}

// AckedFeedback is feedback answered 200; GroundTruth "" when none was
// sent.
type AckedFeedback struct {
	MetaQueryID string
	ModelID     int64
	WasAccepted bool
	ShownAt     []time.Time
	GroundTruth string
}

// AckedContextUpdate is one change of a context file in an update answered
// 200; Lines is the file as that answer gave it. Final marks the last
// change of its file when no later edit of the user's went unanswered:
// the stored file must then equal Lines.
type AckedContextUpdate struct {
	ProjectID, FileName, ChangeType string
	StartLine, EndLine              int
	NewLines                        []string
	Lines                           []string
	Final                           bool
}

// AckedChat is a chat request answered 200: its meta_query, the user's
// message and a generation per response without error.
type AckedChat struct {
	ChatID, MetaQueryID, UserID string
	Message                     string
	Generations                 []AckedGeneration
}
