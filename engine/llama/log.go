package llama

/*
#include "binding.h"
*/
import "C"

import (
	"context"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
)

// logMessage is the constant slog message of every line llama.cpp and ggml
// print; the line itself is the "text" attribute.
const logMessage = "llama.cpp"

var (
	logger atomic.Pointer[slog.Logger]

	// logMu guards logBuf. llama.cpp prints a line in pieces (a message,
	// then GGML_LOG_LEVEL_CONT continuations such as progress dots), from
	// whichever thread is working; pieces are joined until a newline.
	logMu    sync.Mutex
	logBuf   strings.Builder
	logLevel slog.Level

	// lastError is the most recent ERROR line, quoted in errors returned
	// after llama.cpp reports failure only through its log.
	lastError atomic.Pointer[string]
)

// lastErrorSuffix returns ": <last llama.cpp error line>" and forgets it, or
// "" when there is none.
func lastErrorSuffix() string {
	p := lastError.Swap(nil)
	if p == nil {
		return ""
	}
	return ": " + *p
}

func init() {
	logger.Store(slog.Default())
	// ggml's Go package installs a stderr sink in its init, which runs
	// before ours; llama_log_set replaces it for both llama and ggml.
	C.c4m_log_install(C.int(minGGMLLevel(slog.Default())))
}

// SetLogger routes llama.cpp's and ggml's log output to l, at these levels:
// ggml DEBUG → slog.LevelDebug-4, INFO → slog.LevelDebug (llama.cpp prints
// hundreds of INFO lines per model load), WARN → Warn, ERROR → Error. Lines
// below l's enabled level are dropped in C, before any cgo callback. A nil l
// silences the output. The default is slog.Default() as of package init.
func SetLogger(l *slog.Logger) {
	if l == nil {
		l = slog.New(slog.DiscardHandler)
	}
	logger.Store(l)
	C.c4m_log_set_min(C.int(minGGMLLevel(l)))
}

// slogLevel maps a ggml_log_level to a slog level.
func slogLevel(level int) slog.Level {
	switch level {
	case C.GGML_LOG_LEVEL_DEBUG:
		return slog.LevelDebug - 4
	case C.GGML_LOG_LEVEL_INFO, C.GGML_LOG_LEVEL_NONE:
		return slog.LevelDebug
	case C.GGML_LOG_LEVEL_WARN:
		return slog.LevelWarn
	default:
		return slog.LevelError
	}
}

// minGGMLLevel is the lowest ggml level that l would print; error lines are
// always forwarded so that the handler decides.
func minGGMLLevel(l *slog.Logger) int {
	ctx := context.Background()
	for _, lv := range []int{C.GGML_LOG_LEVEL_DEBUG, C.GGML_LOG_LEVEL_INFO, C.GGML_LOG_LEVEL_WARN} {
		if l.Enabled(ctx, slogLevel(lv)) {
			return lv
		}
	}
	return C.GGML_LOG_LEVEL_ERROR
}

// logLine receives one piece of llama.cpp output. level is already resolved
// for continuations (see c4m_log_cb).
func logLine(level int, text *C.char) {
	s := C.GoString(text)
	logMu.Lock()
	if logBuf.Len() == 0 {
		logLevel = slogLevel(level)
	}
	logBuf.WriteString(s)
	var line string
	flush := strings.HasSuffix(s, "\n")
	if flush {
		line = strings.Trim(logBuf.String(), "\n")
		logBuf.Reset()
	}
	lv := logLevel
	logMu.Unlock()
	if !flush || strings.TrimSpace(line) == "" {
		return
	}
	if lv >= slog.LevelError {
		lastError.Store(&line)
	}
	logger.Load().Log(context.Background(), lv, logMessage, slog.String("text", line))
}
