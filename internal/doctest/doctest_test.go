package doctest

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

const page = "# A page\n" +
	"\n" +
	"```sh\n" +
	"greeting=hello          # a note, not output\n" +
	"echo \"$greeting,   world\" \\\n" +
	"  and more\n" +
	"    # hello, world and …\n" +
	"\n" +
	"# prose in a block, after a blank line\n" +
	"cat <<'EOF'\n" +
	"# not a comment: the here-document's body\n" +
	"EOF\n" +
	"ls /nonexistent\n" +
	"# ls: cannot access …: No such file or directory\n" +
	"# (exit 2)\n" +
	"```\n" +
	"\n" +
	"<!-- doctest: skip needs a cluster that is not here -->\n" +
	"```bash\n" +
	"false\n" +
	"```\n" +
	"\n" +
	"```yaml\n" +
	"not: run\n" +
	"```\n" +
	"\n" +
	"```sh\n" +
	"printf 'a  b\\nc\\n'\n" +
	"```\n" +
	"<!-- doctest: output -->\n" +
	"```text\n" +
	"a b\n" +
	"c\n" +
	"```\n"

func TestParse(t *testing.T) {
	p, err := Parse("page.md", page)
	if err != nil {
		t.Fatal(err)
	}
	if len(p.Steps) != 5 || p.Skipped != 1 {
		t.Fatalf("%d steps, %d skipped; want 5 and 1: %+v", len(p.Steps), p.Skipped, p.Steps)
	}
	want := []struct {
		line   int
		script string
		expect []string
		exit   int
	}{
		{4, "greeting=hello          # a note, not output", nil, 0},
		{5, "echo \"$greeting,   world\" \\\n  and more", []string{"hello, world and …"}, 0},
		{10, "cat <<'EOF'\n# not a comment: the here-document's body\nEOF", nil, 0},
		{13, "ls /nonexistent", []string{"ls: cannot access …: No such file or directory"}, 2},
		{28, "printf 'a  b\\nc\\n'", []string{"a b", "c"}, 0},
	}
	for i, w := range want {
		st := p.Steps[i]
		if st.Line != w.line || st.Script != w.script || strings.Join(st.Expect, "|") != strings.Join(w.expect, "|") || st.Exit != w.exit {
			t.Errorf("step %d: line %d %q expect %q exit %d; want line %d %q expect %q exit %d", i, st.Line, st.Script, st.Expect, st.Exit, w.line, w.script, w.expect, w.exit)
		}
	}
}

func TestParseErrors(t *testing.T) {
	cases := map[string]string{
		"<!-- doctest: skip -->\n```sh\nx\n```\n":              "needs a reason",
		"<!-- doctest: skipp why -->\n```sh\nx\n```\n":         `unknown doctest directive "skipp"`,
		"<!-- doctest: skip why -->\ntext\n```sh\nx\n```\n":    "not followed by a code block",
		"<!-- doctest: skip why -->\n```yaml\nx: 1\n```\n":     "would not run anyway",
		"<!-- doctest: output -->\n```text\nx\n```\n":          "no command run before it",
		"```sh\ncat <<EOF\nx\n```\n":                           "here-document EOF never ends",
		"```sh\nx\n":                                           "never closed",
		"<!-- doctest: running wasmkube version -->\n":         "needs a `wasmkube up …` command",
		"<!-- doctest: skip a -->\n<!-- doctest: output -->\n": "two doctest directives",
	}
	for source, want := range cases {
		_, err := Parse("p.md", source)
		if err == nil || !strings.Contains(err.Error(), want) || !strings.HasPrefix(err.Error(), "p.md:") {
			t.Errorf("Parse(%q) = %v; want an error naming p.md and %q", source, err, want)
		}
	}
}

func TestParseErrorWords(t *testing.T) {
	p, err := Parse("p.md", "```sh\nkubectl get pods\n    # Error from server (Forbidden): …\nwasmkube up --profile demo --dry-run\n```\n")
	if err != nil {
		t.Fatal(err)
	}
	if p.Steps[0].Exit != -1 {
		t.Errorf("an output line beginning with Error: exit %d, want -1 (any failure)", p.Steps[0].Exit)
	}
	if p.Steps[1].Up() {
		t.Error("up --dry-run taken for a cluster start")
	}
	for _, up := range []string{"wasmkube up --profile demo", "go run ./cmd/wasmkube up", "wasmkube up", "make up"} {
		if !(&Step{Script: up}).Up() {
			t.Errorf("%q not taken for a cluster start", up)
		}
	}
}

func TestMatch(t *testing.T) {
	out := "NAME    STATUS   AGE\ndefault Active   3s\nkube-system   Active   3s\n"
	for _, ok := range [][]string{
		{"NAME STATUS AGE", "kube-system Active …"},
		{"default   Active …"},
		{"…Active…", "…Active…"},
		{"… 3s", "kube-system … 3s"},
		{"NAME … STATUS … AGE"}, // … may stand for nothing between words
		{},
	} {
		if err := Match(ok, out); err != nil {
			t.Errorf("Match(%q): %v", ok, err)
		}
	}
	for expect, want := range map[string]string{
		"kube-public Active …":               "is not in the output",
		"kube-system …\x00default Active …":  "before the line expected ahead of it",
		"Active … Active":                    "is not in the output",
		"NAME STATUS AGE\x00NAME STATUS AGE": "before the line",
		"default Active":                     "is not in the output", // a part of a line is not the line
		"default":                            "is not in the output",
		"kube-system Active 3":               "is not in the output",
	} {
		err := Match(strings.Split(expect, "\x00"), out)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Match(%q) = %v; want %q", expect, err, want)
		}
	}
}

// testEnv is an Env for pages run by bash alone, with a fake wasmkube on PATH.
func testEnv(t *testing.T) Env {
	t.Helper()
	if _, err := exec.LookPath("bash"); err != nil {
		t.Skip("no bash")
	}
	dir := t.TempDir()
	bin := filepath.Join(dir, "bin")
	if err := os.MkdirAll(bin, 0o755); err != nil {
		t.Fatal(err)
	}
	// A stand-in for the binary: `up` prints what up prints, waits for the interrupt and says so.
	fake := "#!/usr/bin/env bash\n" +
		"if [ \"$1\" = up ]; then\n" +
		"  if [ \"$3\" = broken ]; then echo 'error: profile broken: bad' >&2; exit 1; fi\n" +
		"  trap 'echo Stopping…; exit 0' INT\n" +
		"  echo \"Ready in 1.0s: https://127.0.0.1:6443 as $USER_NAME\"; echo 'Press Ctrl-C to stop (data is kept).'\n" +
		"  while :; do sleep 0.05; done\n" +
		"fi\n" +
		"echo \"wasmkube $*\"\n"
	if err := os.WriteFile(filepath.Join(bin, "wasmkube"), []byte(fake), 0o755); err != nil {
		t.Fatal(err)
	}
	return Env{
		Dir: dir, Scratch: t.TempDir(),
		Vars:           []string{"PATH=" + bin + ":" + os.Getenv("PATH"), "HOME=" + dir},
		CommandTimeout: 3 * time.Second, ReadyTimeout: 5 * time.Second, StopTimeout: 5 * time.Second,
	}
}

// TestRunPage runs a page with bash: state carries between commands, outputs and statuses are
// checked, `go run ./cmd/wasmkube` is the binary on PATH, a background up is started with the
// shell's variables and stopped at the end.
func TestRunPage(t *testing.T) {
	env := testEnv(t)
	src := page + "\n```sh\nexport USER_NAME=ana\ngo run ./cmd/wasmkube up --profile demo\n# Ready in …: https://127.0.0.1:6443 as ana\n" +
		"go run ./cmd/wasmkube kubectl get ns\n# wasmkube kubectl get ns\n" +
		"go run ./cmd/wasmkube up --profile demo\n# Press Ctrl-C to stop …\n```\n" +
		"<!-- doctest: running wasmkube up --profile demo -->\n" +
		"```sh\nwasmkube up --profile broken\n# error: profile broken: …\n```\n"
	p, err := Parse("page.md", src)
	if err != nil {
		t.Fatal(err)
	}
	if errs := RunPage(env, p); len(errs) != 0 {
		t.Fatalf("RunPage: %v", errors.Join(errs...))
	}
}

// TestRunPageFails shows what a drifted page gets: the page, the line, the command, the reason
// and the output.
func TestRunPageFails(t *testing.T) {
	env := testEnv(t)
	cases := map[string][]string{
		"```sh\necho hello\n# goodbye\necho never\n# never\n```\n": {"p.md:2:", `"goodbye" is not in the output`, "command: echo hello", "output:\n    hello"},
		"```sh\nfalse\n```\n":                        {"p.md:2:", "exit status 1; the page shows no failure"},
		"```sh\nfalse | cat\n```\n":                  {"p.md:2:", "exit status 1; the page shows no failure"},
		"```sh\ntrue\n# error: it fails\n```\n":      {"p.md:2:", "succeeded; the page shows it failing"},
		"```sh\nexit 3\n```\n":                       {"p.md:2:", "the shell ended"},
		"```sh\nsleep 10\n```\n":                     {"p.md:2:", "still running after"},
		"```sh\nwasmkube up --profile broken\n```\n": {"p.md:2:", "exit status 1", "error: profile broken: bad"},
		"```sh\nwasmkube up\n# as bob\n```\n":        {"p.md:2:", `"as bob" is not in the output`},
	}
	for src, wants := range cases {
		p, err := Parse("p.md", src)
		if err != nil {
			t.Fatal(err)
		}
		errs := RunPage(env, p)
		if len(errs) != 1 {
			t.Errorf("%q: %d failures, want 1: %v", src, len(errs), errs)
			continue
		}
		for _, want := range wants {
			if !strings.Contains(errs[0].Error(), want) {
				t.Errorf("%q: failure %q lacks %q", src, errs[0], want)
			}
		}
	}
}

func TestMatchExact(t *testing.T) {
	out := "Starting\n\n  ✓ pki ready (0.1s)\nReady in 1.2s\n"
	if err := MatchExact([]string{"Starting", "✓ pki ready (…s)", "Ready in …s"}, out); err != nil {
		t.Errorf("MatchExact: %v", err)
	}
	for expect, want := range map[string]string{
		"Starting\x00✓ pki ready (…s)":                    "1 more lines than the page shows",
		"Starting\x00Ready in …s\x00✓ pki ready (…s)":     `line 2 is`,
		"Starting\x00✓ pki ready (…s)\x00Ready in …\x00x": "the output has only 3 lines",
	} {
		err := MatchExact(strings.Split(expect, "\x00"), out)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("MatchExact(%q) = %v; want %q", expect, err, want)
		}
	}
}

// TestParseShapes: blocks in lists, ~~~ fences and longer fences run; another shell's block, an
// empty output line and a here-string are what they are.
func TestParseShapes(t *testing.T) {
	src := "1. Step:\n\n   ```sh\n   echo a\n   # a\n   ```\n\n~~~bash\ncat <<< \"x y\"\n# x y\n~~~\n\n" +
		"````shell\necho '```'\n````\n\n```sh\nwasmkube up --profile demo   # not --dry-run\nwasmkube up \\\n  --dry-run\nA=b wasmkube up\n```\n"
	p, err := Parse("p.md", src)
	if err != nil {
		t.Fatal(err)
	}
	var scripts []string
	for _, st := range p.Steps {
		scripts = append(scripts, st.Script)
	}
	want := []string{"echo a", "cat <<< \"x y\"", "echo '```'", "wasmkube up --profile demo   # not --dry-run", "wasmkube up \\\n  --dry-run", "A=b wasmkube up"}
	if strings.Join(scripts, "|") != strings.Join(want, "|") {
		t.Fatalf("steps %q, want %q", scripts, want)
	}
	if p.Steps[0].Expect[0] != "a" || p.Steps[1].Expect[0] != "x y" {
		t.Errorf("expected output: %q %q", p.Steps[0].Expect, p.Steps[1].Expect)
	}
	for i, up := range []bool{false, false, false, true, false, true} {
		if p.Steps[i].Up() != up {
			t.Errorf("%q: Up() = %v, want %v", p.Steps[i].Script, !up, up)
		}
	}
	for source, want := range map[string]string{
		"```console\n$ wasmkube version\n```\n": "a ```console block the run cannot run",
		"```sh\necho\n#\n```\n":                 "an empty line of expected output",
		"```sh\ncat <<\\EOF\nx\n```\n":          "here-document EOF never ends",
	} {
		if _, err := Parse("p.md", source); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Parse(%q) = %v; want %q", source, err, want)
		}
	}
	if p, _ := Parse("p.md", "```sh\nfalse\n# errors: none\n```\n"); p.Steps[0].Exit != 0 {
		t.Errorf("a line beginning with the word errors taken for a failure")
	}
}

// TestParseEdges: the cases a review found.
func TestParseEdges(t *testing.T) {
	// An output block after a skipped block belongs to no command that ran.
	if _, err := Parse("p.md", "```sh\necho a\n```\n<!-- doctest: skip why -->\n```sh\necho b\n```\n<!-- doctest: output -->\n```text\nb\n```\n"); err == nil {
		t.Error("an output block after a skipped block was accepted")
	}
	// A # inside quotes is not a note; a tab before a note is.
	for line, want := range map[string]string{
		"wasmkube up --apiserver-arg 'a= #b' --dry-run": "wasmkube up --apiserver-arg 'a= #b' --dry-run",
		"wasmkube up\t# note":                           "wasmkube up",
		`echo "x # y" # note`:                           `echo "x # y"`,
		"# all note":                                    "",
	} {
		if got := withoutNote(line); got != want {
			t.Errorf("withoutNote(%q) = %q, want %q", line, got, want)
		}
	}
	if (&Step{Script: "wasmkube up --apiserver-arg 'a= #b' --dry-run"}).Up() {
		t.Error("a --dry-run after a quoted # taken for a cluster start")
	}
	// (exit 0) stays, whatever lines follow it.
	p, err := Parse("p.md", "```sh\necho error: none\n# (exit 0)\n# error: none\n```\n")
	if err != nil || p.Steps[0].Exit != 0 {
		t.Errorf("(exit 0) before an error line: %v %+v", err, p.Steps)
	}
	// bash ends <<EOF at EOF alone on its line, <<-EOF also after tabs.
	if _, err := Parse("p.md", "```sh\ncat <<EOF\n  EOF\n```\n"); err == nil {
		t.Error("an indented EOF taken for the end of <<EOF")
	}
	if _, err := Parse("p.md", "```sh\ncat <<-EOF\n\tEOF\n```\n"); err != nil {
		t.Errorf("<<-EOF: %v", err)
	}
	// A line beginning with an inline code span is not a fence.
	p, err = Parse("p.md", "```wasmkube up``` is the command.\n\n```sh\necho a\n```\n")
	if err != nil || len(p.Steps) != 1 {
		t.Errorf("inline span at a line's start: %v, %d steps", err, len(p.Steps))
	}
	// The text around … keeps its spaces.
	if Match([]string{"web …"}, "webserver is down\n") == nil {
		t.Error(`"web …" matched "webserver is down"`)
	}
}
