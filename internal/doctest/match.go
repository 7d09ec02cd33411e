package doctest

import (
	"fmt"
	"strings"
)

// Match checks that every expected line is a line of out, in order (out may have other lines
// between them): runs of white space compare equal, the ends of lines are trimmed and "…" stands
// for any text. It returns the first expected line that is not, with the reason.
func Match(expect []string, out string) error {
	got := lines(out)
	at := 0
	for _, want := range expect {
		i := findLine(want, got, at)
		if i < 0 {
			if findLine(want, got, 0) >= 0 {
				return fmt.Errorf("%q is in the output, but before the line expected ahead of it", want)
			}
			return fmt.Errorf("%q is not in the output", want)
		}
		at = i + 1
	}
	return nil
}

// MatchExact checks that the lines of out that are not blank are the expected lines, one for
// one, in order, compared as Match compares them.
func MatchExact(expect []string, out string) error {
	var got []string
	for _, l := range lines(out) {
		if strings.TrimSpace(l) != "" {
			got = append(got, l)
		}
	}
	for i, want := range expect {
		if i >= len(got) {
			return fmt.Errorf("%q: the output has only %d lines", want, len(got))
		}
		if findLine(want, got[i:i+1], 0) < 0 {
			return fmt.Errorf("line %d is %q, the page shows %q", i+1, got[i], want)
		}
	}
	if len(got) > len(expect) {
		return fmt.Errorf("the output has %d more lines than the page shows, from %q", len(got)-len(expect), got[len(expect)])
	}
	return nil
}

// findLine returns the index of the first line of got at or after from that pattern matches, or -1.
func findLine(pattern string, got []string, from int) int {
	parts := strings.Split(normalize(pattern), "…")
	for i := from; i < len(got); i++ {
		if matchLine(parts, normalize(got[i])) {
			return i
		}
	}
	return -1
}

// matchLine reports whether line is the pattern whose text between "…"s is parts: it begins
// with the first part, ends with the last and has the others between, in order.
func matchLine(parts []string, line string) bool {
	for i := range parts {
		parts[i] = strings.TrimSpace(parts[i])
	}
	if len(parts) == 1 {
		return line == parts[0]
	}
	first, last := parts[0], parts[len(parts)-1]
	if !strings.HasPrefix(line, first) {
		return false
	}
	line = line[len(first):]
	for _, part := range parts[1 : len(parts)-1] {
		i := strings.Index(line, part)
		if i < 0 {
			return false
		}
		line = line[i+len(part):]
	}
	return strings.HasSuffix(line, last)
}

// normalize turns every run of white space into one space and trims the ends.
func normalize(s string) string {
	return strings.Join(strings.Fields(s), " ")
}
