package docs_test

import (
	"context"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/wasmkube/wasmkube/internal/doctest"
)

// readerOrder is the order a reader meets the pages in: the README, the examples in the order
// of their table, then the docs as the README links them. Every page is here: TestWalkthroughs
// fails on one it does not know, so a new page cannot escape the run.
var readerOrder = []string{
	"README.md",
	"examples/README.md",
	"examples/magic-authn/README.md",
	"examples/magic-authz/README.md",
	"examples/magic-validate/README.md",
	"examples/magic-validate-rust/README.md",
	"examples/magic-mutate/README.md",
	"examples/workload-policy/README.md",
	"examples/hmac-authn/README.md",
	"examples/safe-annotations/README.md",
	"examples/default-labels/README.md",
	"examples/unique-ingress-host/README.md",
	"examples/required-labels/README.md",
	"examples/no-latest-tag/README.md",
	"docs/profiles.md",
	"docs/authoring.md",
	"docs/module-spec.md",
	"docs/scale-out.md",
	"docs/security.md",
	"docs/reliability.md",
	"docs/architecture.md",
	"docs/benchmarks.md",
	"docs/benchmarks-before-after.md",
	"docs/rationale.md",
	"docs/walkthroughs.md",
}

// TestWalkthroughs runs every shell block of the README, the docs and the examples' READMEs
// with the wasmkube built from this tree, page after page in reader order, as one reader on a
// fresh machine: one home directory for the whole run (so data that a page leaves behind
// meets the pages after it, as it would meet the reader), one shell and the page's own
// clusters per page (docs/walkthroughs.md has the conventions).
func TestWalkthroughs(t *testing.T) {
	root, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	pages := parsePages(t, root)
	// The pages start the demo profiles on their own ports, as a reader does.
	for _, port := range []string{"6443", "6444"} {
		ln, err := net.Listen("tcp", "127.0.0.1:"+port)
		if err != nil {
			t.Fatalf("port %s is taken (%v): the walkthroughs start the demo and kubewarden-demo profiles on 6443 and 6444, as the README does; stop what listens there (a wasmkube up?) and run again", port, err)
		}
		_ = ln.Close()
	}
	env := walkthroughEnv(t, root)
	// The run ends itself before the test's deadline (and on Ctrl-C), killing what it started:
	// no cluster outlives the test holding its ports.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if deadline, ok := t.Deadline(); ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithDeadline(ctx, deadline.Add(-time.Minute))
		defer cancel()
	}
	env.Context = ctx
	before := checkoutStatus(t, root)
	defer func() {
		if after := checkoutStatus(t, root); after != before {
			t.Errorf("the walkthroughs changed the checkout (git status --porcelain):\nbefore:\n%s\nafter:\n%s", before, after)
		}
	}()
	for _, p := range pages {
		t.Run(p.Path, func(t *testing.T) {
			if len(p.Steps) == 0 {
				t.Skipf("no command to run (%d blocks skipped)", p.Skipped)
			}
			env.Scratch = t.TempDir()
			for _, err := range doctest.RunPage(env, p) {
				t.Error(err)
			}
		})
	}
}

// checkoutStatus is `git status --porcelain` of the checkout ("" outside a git checkout).
func checkoutStatus(t *testing.T, root string) string {
	cmd := exec.Command("git", "status", "--porcelain")
	cmd.Dir = root
	out, err := cmd.Output()
	if err != nil {
		t.Logf("git status: %v (the checkout is not compared)", err)
		return ""
	}
	return string(out)
}

// parsePages reads the pages in reader order and fails on a page readerOrder lacks.
func parsePages(t *testing.T, root string) []*doctest.Page {
	var found []string
	for _, glob := range []string{"README.md", "docs/*.md", "examples/README.md", "examples/*/README.md"} {
		matches, err := filepath.Glob(filepath.Join(root, glob))
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range matches {
			rel, _ := filepath.Rel(root, m)
			found = append(found, filepath.ToSlash(rel))
		}
	}
	for _, f := range found {
		if !slices.Contains(readerOrder, f) {
			t.Errorf("%s: a page readerOrder (docs/walkthroughs_test.go) does not list: add it where a reader meets it", f)
		}
	}
	var pages []*doctest.Page
	for _, path := range readerOrder {
		source, err := os.ReadFile(filepath.Join(root, path))
		if err != nil {
			t.Fatalf("%s: %v (listed in readerOrder)", path, err)
		}
		p, err := doctest.Parse(path, string(source))
		if err != nil {
			t.Fatal(err)
		}
		pages = append(pages, p)
	}
	return pages
}

// walkthroughEnv builds wasmkube from the tree and makes the reader's machine: a workspace
// that sees the repository's files (commands run from the top of a checkout, as the README
// says) but keeps the files pages write, and a home directory of its own.
func walkthroughEnv(t *testing.T, root string) doctest.Env {
	if _, err := exec.LookPath("go"); err != nil {
		t.Skip("the go command is not on PATH")
	}
	dir := t.TempDir()
	bin := filepath.Join(dir, "bin")
	build := exec.Command("go", "build", "-o", filepath.Join(bin, "wasmkube"), "./cmd/wasmkube")
	build.Dir = root
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build ./cmd/wasmkube: %v\n%s", err, out)
	}
	// kubectl in the pages is any kubectl, which reads $KUBECONFIG: the built-in one, told so.
	shim := "#!/bin/sh\nexec wasmkube kubectl --kubeconfig \"${KUBECONFIG:-$HOME/.kube/config}\" \"$@\"\n"
	if err := os.WriteFile(filepath.Join(bin, "kubectl"), []byte(shim), 0o755); err != nil {
		t.Fatal(err)
	}
	work := filepath.Join(dir, "work")
	linkCheckout(t, root, work)
	return doctest.Env{
		Dir: work, Vars: readerVars(t, dir, bin),
		CommandTimeout: 3 * time.Minute, ReadyTimeout: 3 * time.Minute, StopTimeout: time.Minute,
		Log: logger(t),
	}
}

// linkCheckout makes work a directory whose entries link to the checkout's top-level entries.
func linkCheckout(t *testing.T, root, work string) {
	entries, err := os.ReadDir(root)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(work, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), ".") || e.Name() == "bin" || e.Name() == "dist" {
			continue
		}
		if err := os.Symlink(filepath.Join(root, e.Name()), filepath.Join(work, e.Name())); err != nil {
			t.Fatal(err)
		}
	}
}

// readerVars is the environment of the reader's shell: this one's, with a home and XDG
// directories of its own, no kubeconfig or profile chosen, wasmkube and kubectl on PATH, and Go's
// caches where they are now (a new home would otherwise start them cold).
func readerVars(t *testing.T, dir, bin string) []string {
	out, err := exec.Command("go", "env", "GOCACHE", "GOMODCACHE", "GOPATH").Output()
	if err != nil {
		t.Fatalf("go env: %v", err)
	}
	goEnv := strings.Fields(string(out))
	drop := []string{"HOME", "KUBECONFIG", "WASMKUBE_PROFILE", "XDG_CONFIG_HOME", "XDG_DATA_HOME", "XDG_CACHE_HOME", "XDG_RUNTIME_DIR", "GOCACHE", "GOMODCACHE", "GOPATH", "PATH"}
	var vars []string
	for _, kv := range os.Environ() {
		name, _, _ := strings.Cut(kv, "=")
		if !slices.Contains(drop, name) {
			vars = append(vars, kv)
		}
	}
	home := filepath.Join(dir, "home")
	return append(vars,
		"HOME="+home,
		"XDG_CONFIG_HOME="+filepath.Join(home, ".config"),
		"XDG_DATA_HOME="+filepath.Join(home, ".local", "share"),
		"XDG_CACHE_HOME="+filepath.Join(home, ".cache"),
		"GOCACHE="+goEnv[0], "GOMODCACHE="+goEnv[1], "GOPATH="+goEnv[2],
		"PATH="+bin+string(os.PathListSeparator)+os.Getenv("PATH"),
	)
}

// logger logs each command and its output with -v (or WASMKUBE_DOCS_LOG=1 without it).
func logger(t *testing.T) func(string, ...any) {
	if !testing.Verbose() && os.Getenv("WASMKUBE_DOCS_LOG") == "" {
		return nil
	}
	return func(format string, args ...any) { t.Logf(format, args...) }
}

// TestExamplesCounted keeps the README's count of the examples and examples/README.md's table
// true: every example directory with a README is a row of the table, and the README names their
// number.
func TestExamplesCounted(t *testing.T) {
	dirs, err := filepath.Glob("../examples/*/README.md")
	if err != nil {
		t.Fatal(err)
	}
	table, err := os.ReadFile("../examples/README.md")
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range dirs {
		name := filepath.Base(filepath.Dir(d))
		if !strings.Contains(string(table), "| ["+name+"]("+name+"/) |") {
			t.Errorf("examples/README.md's table has no row for %s", name)
		}
	}
	if rows := strings.Count(string(table), "\n| ["); rows != len(dirs) {
		t.Errorf("examples/README.md's table has %d rows, and there are %d examples", rows, len(dirs))
	}
	readme, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	words := []string{"zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven", "twelve", "thirteen", "fourteen", "fifteen"}
	if n := len(dirs); n >= len(words) || !strings.Contains(string(readme), "[examples/](examples/) has "+words[n]+" to copy") {
		t.Errorf("README.md does not say that examples/ has %d modules (\"[examples/](examples/) has %s to copy\")", n, words[min(n, len(words)-1)])
	}
}
