package wasm

import (
	"errors"
	"io"
)

// input is a module's stdin: one document per call, swapped in without allocation.
type input struct {
	b    []byte
	off  int
	inst *instance
	// owned says b is the input's own copy, which may grow in place.
	owned bool
}

func (in *input) reset(b []byte) { in.b, in.off, in.owned = b, 0, false }

// append adds more input after what is there: the first time into a copy (never into the
// caller's slice), then in place, so that appending n times costs O(total), not O(n × total).
func (in *input) append(more []byte) {
	if !in.owned {
		in.b, in.owned = append(make([]byte, 0, 2*(len(in.b)+len(more))), in.b...), true
	}
	in.b = append(in.b, more...)
}

func (in *input) Read(p []byte) (int, error) {
	if err := in.inst.expired(); err != nil {
		return 0, err
	}
	if in.off >= len(in.b) {
		return 0, io.EOF
	}
	n := copy(p, in.b[in.off:])
	in.off += n
	return n, nil
}

var errOutputLimit = errors.New("output limit reached")

// output is a module's stdout: bounded; writes past the limit fail and are remembered.
type output struct {
	b        []byte
	limit    int
	overflow bool
	inst     *instance
}

func (o *output) reset() { o.b, o.overflow = o.b[:0], false }

func (o *output) Write(p []byte) (int, error) {
	if err := o.inst.expired(); err != nil {
		return 0, err
	}
	if len(o.b)+len(p) > o.limit {
		o.overflow = true
		return 0, errOutputLimit
	}
	o.b = append(o.b, p...)
	return len(p), nil
}

// headTail keeps the first and the last max bytes written: a module's stderr, for error
// messages. A Go guest's panic or fatal error says what happened at the start and where at the end.
// Writes fail once the call's deadline has passed (a write of many small pieces is not free).
type headTail struct {
	head, tail []byte
	max        int
	dropped    bool
	inst       *instance
}

func (t *headTail) reset() { t.head, t.tail, t.dropped = t.head[:0], t.tail[:0], false }

func (t *headTail) Write(p []byte) (int, error) {
	if err := t.inst.expired(); err != nil {
		return 0, err
	}
	n := len(p)
	if room := t.max - len(t.head); room > 0 {
		k := min(room, len(p))
		t.head = append(t.head, p[:k]...)
		p = p[k:]
	}
	if len(p) == 0 {
		return n, nil
	}
	if len(p) >= t.max {
		t.dropped = t.dropped || len(t.tail) > 0 || len(p) > t.max
		t.tail = append(t.tail[:0], p[len(p)-t.max:]...)
		return n, nil
	}
	if over := len(t.tail) + len(p) - t.max; over > 0 {
		t.tail = append(t.tail[:0], t.tail[over:]...)
		t.dropped = true
	}
	t.tail = append(t.tail, p...)
	return n, nil
}

// String is the head, and the tail after " … " when something between them was dropped.
func (t *headTail) String() string {
	switch {
	case len(t.tail) == 0:
		return string(t.head)
	case t.dropped:
		return string(t.head) + " … " + string(t.tail)
	}
	return string(t.head) + string(t.tail)
}
