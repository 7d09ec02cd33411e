package doctest

import (
	"fmt"
	"strings"
)

// Match checks that every expected line appears in out, in order, each within one line of its
// own: runs of white space compare equal and "…" stands for any text. It returns the first
// expected line that does not, with the reason.
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

// matchLine reports whether the parts appear in line in order (a pattern's text between its
// "…"s, trimmed).
func matchLine(parts []string, line string) bool {
	for _, part := range parts {
		part = strings.TrimSpace(part)
		i := strings.Index(line, part)
		if i < 0 {
			return false
		}
		line = line[i+len(part):]
	}
	return true
}

// normalize turns every run of white space into one space and trims the ends.
func normalize(s string) string {
	return strings.Join(strings.Fields(s), " ")
}
