package nodes

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"

	"github.com/go-logr/logr"
)

// logWriter turns kwok's log records into a logr logger's, so that kwok's lines read like the
// other components' in the Kubernetes log. kwok logs through slog to an io.Writer only (its
// Logger wraps no other handler), as JSON when the writer is not a terminal: one record per
// Write.
type logWriter struct{ logger logr.Logger }

func (w logWriter) Write(p []byte) (int, error) {
	var rec map[string]any
	if err := json.Unmarshal(p, &rec); err != nil {
		w.logger.Info(strings.TrimSpace(string(p)))
		return len(p), nil
	}
	level, _ := rec["level"].(string)
	msg, _ := rec["msg"].(string)
	for _, k := range []string{"time", "level", "msg", "source"} {
		delete(rec, k)
	}
	keys := make([]string, 0, len(rec))
	for k := range rec {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	kv := make([]any, 0, 2*len(keys))
	for _, k := range keys {
		kv = append(kv, k, rec[k])
	}
	switch {
	case expectedRace(rec):
		w.logger.V(2).Info(msg, kv...)
	case level == "ERROR":
		w.logger.Error(nil, msg, kv...)
	default:
		w.logger.Info(msg, kv...)
	}
	return len(p), nil
}

// expectedRace reports whether a record is one of the errors kwok 0.8 logs in normal operation:
// it queues a stage for each event of a pod and plays each with the pod as it was then, so a
// pod seen twice before its first play lands is played twice. The second play of pod-delete finds
// the pod gone; the second play of pod-ready adds a second pod IP, which the server refuses
// (the pod keeps the first).
func expectedRace(rec map[string]any) bool {
	stage, _ := rec["stage"].(string)
	err := fmt.Sprint(rec["err"])
	return (stage == "pod-delete" && strings.Contains(err, "not found")) ||
		(stage == "pod-ready" && strings.Contains(err, "may specify no more than one IP for each IP family"))
}
