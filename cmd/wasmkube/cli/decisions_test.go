package cli

import (
	"bufio"
	"context"
	"strings"
	"testing"
	"time"
)

// followedLine is a line of `wasmkube decisions -f` and when it arrived.
type followedLine struct {
	text string
	at   time.Time
}

// followDecisions runs `wasmkube decisions -f` until the test ends.
func (e *env) followDecisions(t *testing.T, args ...string) <-chan followedLine {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	cmd := e.command(ctx, append([]string{"decisions", "-f"}, args...)...)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	lines := make(chan followedLine, 1000)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			lines <- followedLine{sc.Text(), time.Now()}
		}
		close(lines)
	}()
	t.Cleanup(func() {
		cancel()
		_ = cmd.Wait()
		if t.Failed() {
			t.Logf("decisions -f stderr: %s", stderr.String())
		}
	})
	return lines
}

// waitDecision waits (10 s at most) for a followed line holding every one of want.
func waitDecision(t *testing.T, lines <-chan followedLine, want ...string) followedLine {
	t.Helper()
	timeout := time.After(10 * time.Second)
	for {
		select {
		case l, ok := <-lines:
			if !ok {
				t.Fatalf("decisions -f ended before a line with %q", want)
			}
			found := true
			for _, w := range want {
				found = found && strings.Contains(l.text, w)
			}
			if found {
				return l
			}
		case <-timeout:
			t.Fatalf("decisions -f printed no line with %q within 10 s", want)
		}
	}
}

// testDecisionsFollow: `wasmkube decisions -f` on the demo cluster shows the walkthrough's
// denial within a second of it, and the magic token's authentication as the user only.
func testDecisionsFollow(t *testing.T, e *env) {
	lines := e.followDecisions(t)
	waitDecision(t, lines, "TIME", "MODULE", "RESULT") // the header: the stream is open
	// The kept decisions come first: the walkthrough's authentication, as the user only.
	l := waitDecision(t, lines, "magic-authn", "authentication", "magic-user", "authenticated")
	if strings.Contains(l.text, "magic-token") {
		t.Errorf("the token is shown: %s", l.text)
	}
	code, _, stderr := e.run("kubectl", "--token", "magic-token", "create", "configmap", "followed", "--from-literal=not-allowed-value=abc")
	denied := time.Now()
	if code == 0 || !strings.Contains(stderr, "denied") {
		t.Fatalf("the walkthrough's denial: %d %s", code, stderr)
	}
	l = waitDecision(t, lines, "magic-validate", "CREATE", "default/followed", "magic-user", "denied", "value 'not-allowed-value' not allowed")
	if late := l.at.Sub(denied); late > time.Second {
		t.Errorf("the denial was shown %s after kubectl had it, want <= 1 s", late)
	}
}
