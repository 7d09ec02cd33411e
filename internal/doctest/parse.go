// Package doctest runs the shell walkthroughs of Markdown pages as a reader follows them and
// checks the output the pages show, so that the documentation cannot drift from the binary.
//
// The conventions a page follows (docs/walkthroughs.md says them for writers):
//
//   - Every ```sh, ```bash or ```shell block runs (fenced by ``` or ~~~, indented in a list or
//     not), in page order, in one shell per page (variables, `export` and `cd` carry over, as in
//     a reader's terminal), unless the line before it is <!-- doctest: skip REASON -->. A block
//     of another shell (```console, ```zsh…) is an error: the run would not run it.
//   - A command is a line that is not a comment, with its `\` continuation lines and here-document.
//     A comment after a command on the same line is a note for the reader and not checked.
//   - Comment lines right below a command (no blank line between) are output it must print: each
//     is a line of its output (stdout and stderr), in that order, other lines may come between;
//     runs of spaces compare equal and … stands for any text. A command must exit 0, unless one
//     of its output lines begins with the word "error" (any case), when it must fail;
//     "# (exit N)" asks for status N.
//   - <!-- doctest: output --> before any block makes that block's lines the whole output of the
//     command run last (a sample output shown as text): every line that is not blank, one for
//     one.
//   - A command `wasmkube up …` (not --dry-run) or `make up` runs in the background, as in a
//     second terminal: the run waits until it is ready (or has ended) and interrupts it, as
//     Ctrl-C does, when the page ends. The same command again, while it runs, checks its output
//     so far. <!-- doctest: running wasmkube up ARGS --> starts such a cluster where the page
//     only says one should be running, unless the page already started it.
package doctest

import (
	"bufio"
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"
)

// Page is a Markdown page's runnable content.
type Page struct {
	Path  string
	Steps []*Step
	// Skipped counts the shell blocks a skip directive kept from running.
	Skipped int
	// lastSkipped is true while the last shell block was a skipped one.
	lastSkipped bool
}

// Step is one thing the run does: a command, or making sure a cluster runs (Running set).
type Step struct {
	Line    int    // line in the page
	Script  string // the command: its line, continuation lines and here-document
	Running string // for a running directive: the `wasmkube up …` command line
	Expect  []string
	// Exit is the status the command must end with; -1 means any failure.
	Exit int
	// exitSet is true once "(exit N)" set Exit: an error line does not change it then.
	exitSet bool
	// ExpectFrom is the line the expected output was read from (for messages).
	ExpectFrom int
	// Exact says that Expect is the whole output (an output block), not lines of it.
	Exact bool
}

// Up reports whether the step starts a cluster in the background.
func (s *Step) Up() bool {
	return s.Running != "" || isUpCommand(s.Script)
}

var (
	directiveRE = regexp.MustCompile(`^<!--\s*doctest:\s*(\S+)\s*(.*?)\s*-->\s*$`)
	fenceRE     = regexp.MustCompile("^( *)(```+|~~~+)\\s*([A-Za-z0-9_-]*)[^`]*$")
	heredocRE   = regexp.MustCompile(`(?:^|[^<])<<(-?)\s*\\?['"]?([A-Za-z_][A-Za-z0-9_]*)['"]?`)
	upRE        = regexp.MustCompile(`^\s*([A-Za-z_][A-Za-z0-9_]*=\S*\s+)*((wasmkube|go run \./cmd/wasmkube)\s+up|make up)(\s|$)`)
	exitRE      = regexp.MustCompile(`^\(exit (\d+)\)$`)
	errorRE     = regexp.MustCompile(`(?i)^error\b`)
	// otherShells are info strings of shell blocks that the run would not run: refused.
	otherShells = []string{"console", "shell-session", "zsh", "fish", "sh-session", "terminal"}
)

// isUpCommand reports whether script is `wasmkube up` (or `make up`) that starts a cluster:
// its first line without the note after it, and no --dry-run anywhere.
func isUpCommand(script string) bool {
	first, _, _ := strings.Cut(script, "\n")
	command := withoutNote(first)
	return upRE.MatchString(command) && !strings.Contains(command, "|") && !strings.Contains(withoutNotes(script), "--dry-run")
}

// withoutNotes is script without the notes after its commands.
func withoutNotes(script string) string {
	var b strings.Builder
	for _, l := range strings.Split(script, "\n") {
		b.WriteString(withoutNote(l) + "\n")
	}
	return b.String()
}

// WithoutNote is a shell line without its comment: from a # that begins a word outside quotes
// (as bash reads it) to the end, and the white space before it.
func withoutNote(line string) string {
	var quote rune
	for i, r := range line {
		switch {
		case quote != 0:
			if r == quote {
				quote = 0
			}
		case r == '\'' || r == '"':
			quote = r
		case r == '#' && (i == 0 || line[i-1] == ' ' || line[i-1] == '\t'):
			return strings.TrimRight(line[:i], " \t")
		}
	}
	return line
}

// pending is what directives said about the next block.
type pending struct {
	skip   string
	output bool
	line   int
}

// Parse reads a page's runnable content from its Markdown source.
func Parse(path, source string) (*Page, error) {
	p := &Page{Path: path}
	lines := strings.Split(source, "\n")
	var next *pending
	for i := 0; i < len(lines); i++ {
		line := lines[i]
		if m := directiveRE.FindStringSubmatch(line); m != nil {
			var err error
			if next, err = p.directive(m[1], m[2], i+1, next); err != nil {
				return nil, err
			}
			continue
		}
		m := fenceRE.FindStringSubmatch(line)
		if m == nil {
			if strings.TrimSpace(line) != "" && next != nil {
				return nil, fmt.Errorf("%s:%d: the doctest directive is not followed by a code block", path, next.line)
			}
			continue
		}
		end := closingFence(lines, i, m[2])
		if end < 0 {
			return nil, fmt.Errorf("%s:%d: code block never closed", path, i+1)
		}
		if err := p.block(strings.ToLower(m[3]), dedent(lines[i+1:end], len(m[1])), i+2, next); err != nil {
			return nil, err
		}
		next, i = nil, end
	}
	if next != nil {
		return nil, fmt.Errorf("%s:%d: the doctest directive is not followed by a code block", path, next.line)
	}
	return p, nil
}

// directive applies one <!-- doctest: VERB ARGS --> line.
func (p *Page) directive(verb, args string, line int, next *pending) (*pending, error) {
	if next != nil {
		return nil, fmt.Errorf("%s:%d: two doctest directives for one block", p.Path, line)
	}
	switch verb {
	case "skip":
		if args == "" {
			return nil, fmt.Errorf("%s:%d: doctest skip needs a reason: <!-- doctest: skip WHY -->", p.Path, line)
		}
		return &pending{skip: args, line: line}, nil
	case "output":
		return &pending{output: true, line: line}, nil
	case "running":
		if !isUpCommand(args) {
			return nil, fmt.Errorf("%s:%d: doctest running needs a `wasmkube up …` command, got %q", p.Path, line, args)
		}
		p.Steps = append(p.Steps, &Step{Line: line, Running: args})
		return nil, nil
	}
	return nil, fmt.Errorf("%s:%d: unknown doctest directive %q (skip, output or running)", p.Path, line, verb)
}

// closingFence returns the index of the line that closes the block opened at lines[open] by
// fence (a run of ` or ~): a line of at least as many of the same character and nothing else.
func closingFence(lines []string, open int, fence string) int {
	for j := open + 1; j < len(lines); j++ {
		l := strings.TrimSpace(lines[j])
		if strings.HasPrefix(l, fence) && strings.Trim(l, fence[:1]) == "" {
			return j
		}
	}
	return -1
}

// dedent removes up to n leading spaces from each line (a block indented in a list).
func dedent(body []string, n int) []string {
	out := make([]string, len(body))
	for i, l := range body {
		trim := len(l) - len(strings.TrimLeft(l, " "))
		out[i] = l[min(trim, n):]
	}
	return out
}

// block adds a code block's steps (body starts at line first of the page).
func (p *Page) block(lang string, body []string, first int, next *pending) error {
	runnable := lang == "sh" || lang == "bash" || lang == "shell"
	if next == nil && slices.Contains(otherShells, lang) {
		return fmt.Errorf("%s:%d: a ```%s block the run cannot run: write ```sh (commands, with their output as comments) or add <!-- doctest: skip WHY -->", p.Path, first-1, lang)
	}
	switch {
	case next != nil && next.output:
		if len(p.Steps) == 0 || p.lastSkipped || p.Steps[len(p.Steps)-1].Script == "" && p.Steps[len(p.Steps)-1].Running == "" {
			return fmt.Errorf("%s:%d: an output block with no command run before it (none, or in a skipped block)", p.Path, next.line)
		}
		last := p.Steps[len(p.Steps)-1]
		last.ExpectFrom, last.Exact = first, true
		for _, l := range body {
			if strings.TrimSpace(l) != "" {
				last.expect(l)
			}
		}
		return nil
	case next != nil:
		if !runnable {
			return fmt.Errorf("%s:%d: doctest skip before a block that would not run anyway (```%s)", p.Path, next.line, lang)
		}
		p.Skipped++
		p.lastSkipped = true
		return nil
	case runnable:
		steps, err := commands(body, first)
		if err != nil {
			return fmt.Errorf("%s:%w", p.Path, err)
		}
		p.Steps = append(p.Steps, steps...)
		p.lastSkipped = false
	}
	return nil
}

// commands splits a shell block's body into commands with their expected output.
func commands(body []string, first int) ([]*Step, error) {
	var steps []*Step
	var last *Step
	for i := 0; i < len(body); i++ {
		trimmed := strings.TrimSpace(body[i])
		switch {
		case trimmed == "":
			last = nil
		case strings.HasPrefix(trimmed, "#"):
			if last != nil {
				if last.ExpectFrom == 0 {
					last.ExpectFrom = first + i
				}
				if strings.TrimSpace(strings.TrimPrefix(trimmed, "#")) == "" {
					return nil, fmt.Errorf("%d: an empty line of expected output (it would match anything): remove it, or leave a blank line before prose", first+i)
				}
				last.expect(strings.TrimPrefix(trimmed, "#"))
			}
		default:
			end, err := commandEnd(body, i)
			if err != nil {
				return nil, fmt.Errorf("%d: %w", first+i, err)
			}
			last = &Step{Line: first + i, Script: strings.Join(body[i:end+1], "\n")}
			steps = append(steps, last)
			i = end
		}
	}
	return steps, nil
}

// commandEnd returns the index of a command's last line: past `\` continuations and a
// here-document's body.
func commandEnd(body []string, start int) (int, error) {
	end := start
	for strings.HasSuffix(strings.TrimRight(body[end], " "), `\`) && end+1 < len(body) {
		end++
	}
	var delimiter string
	var stripTabs bool
	for _, l := range body[start : end+1] {
		if m := heredocRE.FindStringSubmatch(withoutNote(l)); m != nil {
			delimiter, stripTabs = m[2], m[1] == "-"
		}
	}
	if delimiter == "" {
		return end, nil
	}
	for j := end + 1; j < len(body); j++ {
		l := body[j]
		if stripTabs {
			l = strings.TrimLeft(l, "\t")
		}
		if l == delimiter { // as bash ends it: the word alone on its line
			return j, nil
		}
	}
	return 0, fmt.Errorf("here-document %s never ends", delimiter)
}

// expect adds one line of expected output (a comment's text, or a line of an output block).
func (s *Step) expect(text string) {
	text = strings.TrimSpace(text)
	if m := exitRE.FindStringSubmatch(text); m != nil {
		s.Exit, _ = strconv.Atoi(m[1])
		s.exitSet = true
		return
	}
	if errorRE.MatchString(text) && !s.exitSet {
		s.Exit = -1
	}
	s.Expect = append(s.Expect, text)
}

// lines splits output into lines.
func lines(out string) []string {
	var ls []string
	sc := bufio.NewScanner(strings.NewReader(out))
	sc.Buffer(make([]byte, 0, 64<<10), 16<<20)
	for sc.Scan() {
		ls = append(ls, sc.Text())
	}
	return ls
}
