package doctest

import (
	"fmt"
	"regexp"
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
	re := patternRE(pattern)
	for i := from; i < len(got); i++ {
		if re.MatchString(normalize(got[i])) {
			return i
		}
	}
	return -1
}

// patternRE is the regular expression of an expected line: its text literally, white space
// normalized, and "…" any text. "a … b" matches "a b" too (… may stand for nothing, with its
// spaces), but "a …" does not match "ab".
func patternRE(pattern string) *regexp.Regexp {
	parts := strings.Split(normalize(pattern), "…")
	var b strings.Builder
	b.WriteString("^")
	for i, part := range parts {
		if i > 0 {
			if strings.HasSuffix(parts[i-1], " ") && strings.HasPrefix(part, " ") {
				part = part[1:]
				b.WriteString("(?:.* )?")
			} else {
				b.WriteString(".*")
			}
		}
		b.WriteString(regexp.QuoteMeta(part))
	}
	b.WriteString("$")
	return regexp.MustCompile(b.String())
}

// normalize turns every run of white space into one space and trims the ends.
func normalize(s string) string {
	return strings.Join(strings.Fields(s), " ")
}
