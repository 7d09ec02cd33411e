package wasm

import (
	"log/slog"
	"sync/atomic"
	"unicode/utf8"

	"golang.org/x/time/rate"
)

// What a module may write to the host's log (tracing/log, __console_log, a WASI-mode policy's
// stderr): lines are cut at MaxLogLine bytes; logBurst lines may come at once and logRate per
// second after that; what is dropped is counted and reported when lines pass again.
const (
	// MaxLogLine is the length at which a module's log line is cut.
	MaxLogLine = 4 << 10
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

// LogLine logs a line that comes from the module to logger at info level, unless the module
// has used up its lines for now (rate-limited per module); msg and the string values of attrs
// (key-value pairs) are cut at MaxLogLine.
func (m *Module) LogLine(logger *slog.Logger, msg string, attrs ...any) {
	if !m.logs.allow() {
		return
	}
	for i, a := range attrs {
		if s, ok := a.(string); ok && i%2 == 1 {
			attrs[i] = TruncateLogLine(s)
		}
	}
	logger.Info(TruncateLogLine(msg), attrs...)
}

// TruncateLogLine cuts s at MaxLogLine bytes, on a rune boundary, and says so.
func TruncateLogLine(s string) string {
	if len(s) <= MaxLogLine {
		return s
	}
	cut := MaxLogLine
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "… (truncated)"
}
