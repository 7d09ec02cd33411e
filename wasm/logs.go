package wasm

import (
	"log/slog"
	"sync/atomic"
	"unicode/utf8"

	"golang.org/x/time/rate"
)

// What a module may write to the host's log (tracing/log, __console_log, a WASI-mode policy's
// stderr): lines are cut at maxLogLine bytes; logBurst lines may come at once and logRate per
// second after that; what is dropped is counted and reported when lines pass again.
const (
	maxLogLine = 4 << 10
	logRate    = 20
	logBurst   = 100
)

// logLimiter bounds the log lines of one module.
type logLimiter struct {
	logger  *slog.Logger
	limiter *rate.Limiter
	dropped atomic.Int64
}

func newLogLimiter(logger *slog.Logger) *logLimiter {
	return &logLimiter{logger: logger, limiter: rate.NewLimiter(logRate, logBurst)}
}

// allow reports whether the module may log a line now.
func (l *logLimiter) allow() bool {
	if !l.limiter.Allow() {
		l.dropped.Add(1)
		return false
	}
	if n := l.dropped.Swap(0); n > 0 {
		l.logger.Warn("module log lines were dropped: more than the rate limit", "dropped", n, "linesPerSecond", logRate)
	}
	return true
}

// logLine logs a line that comes from the module to logger at info level, unless the module
// has used up its lines for now; msg and the string values of attrs (key-value pairs) are cut.
func (m *Module) logLine(logger *slog.Logger, msg string, attrs ...any) {
	if !m.logs.allow() {
		return
	}
	for i, a := range attrs {
		if s, ok := a.(string); ok && i%2 == 1 {
			attrs[i] = truncate(s)
		}
	}
	logger.Info(truncate(msg), attrs...)
}

// truncate cuts s at maxLogLine bytes, on a rune boundary, and says so.
func truncate(s string) string {
	if len(s) <= maxLogLine {
		return s
	}
	cut := maxLogLine
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "… (truncated)"
}
