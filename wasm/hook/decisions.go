package hook

import (
	"bufio"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Decision is one module decision as `wasmkube decisions` shows it.
//
// # Notes
//
//   - It never holds a token (authentication records the user a token was mapped to, or none)
//     or an object's content; a message about a Secret has the Secret's values redacted.
type Decision struct {
	// Seq numbers the decisions of a server from 1.
	Seq  uint64    `json:"seq"`
	Time time.Time `json:"time"`
	// Module is the module's name; Hook is authentication, authorization, or admission
	// (mutating or validating).
	Module string `json:"module"`
	Hook   string `json:"hook"`
	// Operation is the admission operation (CREATE, UPDATE, DELETE, CONNECT) or the verb asked
	// about (authorization).
	Operation string `json:"operation,omitempty"`
	// Resource is group/version/resource[/subresource] ("" group: version/resource), or the
	// path of a non-resource request.
	Resource  string `json:"resource,omitempty"`
	Namespace string `json:"namespace,omitempty"`
	Name      string `json:"name,omitempty"`
	// User is who asked, or for authentication who the token was mapped to.
	User string `json:"user,omitempty"`
	// Result is allowed, denied, mutated (admission), authenticated, unauthenticated,
	// no-opinion (authorization), or failed (with the failure policy's outcome in Message).
	Result  string `json:"result"`
	Message string `json:"message,omitempty"`
	// Latency is the module call's (µs).
	LatencyMicros int64 `json:"latencyMicros"`
}

// Results of a Decision.
const (
	ResultAllowed         = "allowed"
	ResultDenied          = "denied"
	ResultMutated         = "mutated"
	ResultAuthenticated   = "authenticated"
	ResultUnauthenticated = "unauthenticated"
	ResultNoOpinion       = "no-opinion"
	ResultFailed          = "failed"
)

// DefaultDecisionLogSize is how many decisions a DecisionLog keeps.
const DefaultDecisionLogSize = 1000

// DecisionLog keeps the latest module decisions in a ring and hands new ones to followers. A
// nil *DecisionLog records nothing.
type DecisionLog struct {
	mu        sync.Mutex
	ring      []Decision
	next      int // where the next decision goes in ring
	seq       uint64
	followers map[chan Decision]struct{}
}

// NewDecisionLog returns a log that keeps the latest size decisions.
func NewDecisionLog(size int) *DecisionLog {
	if size <= 0 {
		size = DefaultDecisionLogSize
	}
	return &DecisionLog{ring: make([]Decision, 0, size), followers: map[chan Decision]struct{}{}}
}

// Record adds d (its Seq is set) and hands it to the followers; a follower that does not keep
// up misses decisions rather than slowing the server.
func (l *DecisionLog) Record(d Decision) {
	if l == nil {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	l.seq++
	d.Seq = l.seq
	if len(l.ring) < cap(l.ring) {
		l.ring = append(l.ring, d)
	} else {
		l.ring[l.next] = d
	}
	l.next = (l.next + 1) % cap(l.ring)
	for f := range l.followers {
		select {
		case f <- d:
		default:
		}
	}
}

// Latest returns the decisions kept, oldest first.
func (l *DecisionLog) Latest() []Decision {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.latest()
}

func (l *DecisionLog) latest() []Decision {
	if len(l.ring) < cap(l.ring) {
		return append([]Decision(nil), l.ring...)
	}
	return append(append([]Decision(nil), l.ring[l.next:]...), l.ring[:l.next]...)
}

// Follow returns the decisions kept and a channel of the decisions made from then on, until
// stop is called.
func (l *DecisionLog) Follow() (kept []Decision, next <-chan Decision, stop func()) {
	ch := make(chan Decision, 256)
	l.mu.Lock()
	defer l.mu.Unlock()
	l.followers[ch] = struct{}{}
	var once sync.Once
	return l.latest(), ch, func() {
		once.Do(func() {
			l.mu.Lock()
			defer l.mu.Unlock()
			delete(l.followers, ch)
		})
	}
}

// DecisionsPath is where the API server serves the decision log (ServeHTTP).
const DecisionsPath = "/wasmkube/decisions"

// ServeHTTP serves the decisions as JSON lines, oldest first: GET, with module=NAME to keep one
// module's, and follow=true to stream new ones until the client goes. Served behind the API
// server's authentication and authorization (a non-resource URL: the admin may, others need a
// role granting get on it).
func (l *DecisionLog) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet {
		http.Error(w, "only GET", http.StatusMethodNotAllowed)
		return
	}
	module := r.URL.Query().Get("module")
	follow := r.URL.Query().Get("follow") == "true"
	w.Header().Set("Content-Type", "application/x-ndjson")
	w.Header().Set("Cache-Control", "no-store")
	out := bufio.NewWriter(w)
	enc := json.NewEncoder(out)
	write := func(d Decision) error {
		if module != "" && d.Module != module {
			return nil
		}
		return enc.Encode(d)
	}
	kept, next, stop := l.Follow()
	defer stop()
	for _, d := range kept {
		if write(d) != nil {
			return
		}
	}
	if out.Flush() != nil || !follow {
		return
	}
	flusher, _ := w.(http.Flusher)
	if flusher != nil {
		flusher.Flush()
	}
	for {
		select {
		case <-r.Context().Done():
			return
		case d := <-next:
			if write(d) != nil || out.Flush() != nil {
				return
			}
			if flusher != nil {
				flusher.Flush()
			}
		}
	}
}

// resourcePath is a resource as the decision log shows it: group/version/resource[/subresource],
// version/resource… for the core group.
func resourcePath(group, version, resource, subresource string) string {
	p := version + "/" + resource
	if group != "" {
		p = group + "/" + p
	}
	if subresource != "" {
		p += "/" + subresource
	}
	return p
}

// IsFollow reports whether r asks to follow the decision log: a long-running request, which the
// API server's request timeout must not end.
func IsFollow(r *http.Request) bool {
	return r.URL.Path == DecisionsPath && r.URL.Query().Get("follow") == "true"
}

// redactValues replaces in msg every value of data, as it is and base64-encoded, by
// [redacted]: a module's message about a Secret may quote it. A value of one or two
// characters cannot be redacted without redacting ordinary words: withheld says so, and the
// message must not be shown.
func redactValues(msg string, data map[string][]byte, stringData map[string]string) (_ string, withheld bool) {
	redact := func(v string) {
		switch {
		case v == "":
		case len(v) < 3:
			withheld = true
		default:
			msg = strings.ReplaceAll(msg, v, "[redacted]")
		}
	}
	forms := func(v string) {
		redact(v)
		redact(base64.StdEncoding.EncodeToString([]byte(v)))
		if q, err := json.Marshal(v); err == nil { // as a JSON string quotes it (in a patch, say)
			redact(string(q[1 : len(q)-1]))
		}
		q := strconv.Quote(v) // as Go's %q quotes it
		redact(q[1 : len(q)-1])
	}
	for _, v := range data {
		forms(string(v))
	}
	for _, v := range stringData {
		forms(v)
	}
	return msg, withheld
}
