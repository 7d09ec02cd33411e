package cli

import (
	"bytes"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// TestUpTrace runs `up --trace` on a fresh data dir and again on its data: each trace holds the
// start-up's phases in order, with times that never go back, and a CPU profile beside it. The
// fresh start waits for the bootstrap hooks; the warm one, whose etcd holds the bootstrap of
// this Kubernetes version, does not.
func TestUpTrace(t *testing.T) {
	e := newEnv(t)
	fresh := runTraced(t, e, "fresh")
	warm := runTraced(t, e, "warm")
	common := []string{"data", "pki", "etcd started", "etcd ready", "etcd", "kube-apiserver config built",
		"kube-apiserver prepared", "kube-apiserver serving", "readyz ok", "default namespace", "kube-apiserver",
		"kubeconfig", "memory returned to the OS"}
	for name, tr := range map[string][]traceLine{"fresh": fresh, "warm": warm} {
		checkOrder(t, name, tr, common)
	}
	checkOrder(t, "fresh", fresh, []string{"kube-apiserver serving", "poststarthook/rbac/bootstrap-roles", "readyz ok"})
	if got := find(fresh, "readyz ok").detail; got != "" {
		t.Errorf("fresh start excluded readyz checks: %q", got)
	}
	if got := find(warm, "readyz ok").detail; !strings.Contains(got, "poststarthook/rbac/bootstrap-roles") {
		t.Errorf("warm start waited for the bootstrap hooks (readyz ok detail %q)", got)
	}
}

type traceLine struct {
	at            float64
	phase, detail string
}

// runTraced starts minimal with --trace, waits for ready, stops it and returns the trace after
// checking its form and the CPU profile beside it.
func runTraced(t *testing.T, e *env, name string) []traceLine {
	t.Helper()
	path := filepath.Join(e.root, name+".trace")
	up := e.startUp("--profile", "minimal", "--port", "0", "--trace", path)
	up.waitReady(t)
	if code := up.interrupt(t); code != 0 {
		t.Fatalf("exit %d:\n%s", code, up.text())
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSuffix(string(data), "\n"), "\n")
	if lines[0] != "# at_ms\tdelta_ms\tphase\tdetail" {
		t.Fatalf("%s: header %q", name, lines[0])
	}
	var out []traceLine
	for _, l := range lines[1:] {
		f := strings.Split(l, "\t")
		at, err := strconv.ParseFloat(f[0], 64)
		if len(f) != 4 || err != nil {
			t.Fatalf("%s: line %q: want 4 tab-separated fields, a time first", name, l)
		}
		if len(out) > 0 && at < out[len(out)-1].at {
			t.Errorf("%s: %q goes back in time", name, l)
		}
		out = append(out, traceLine{at: at, phase: f[2], detail: f[3]})
	}
	profile, err := os.ReadFile(path + ".cpu.pprof")
	if err != nil || !bytes.HasPrefix(profile, []byte{0x1f, 0x8b}) { // pprof's gzipped protobuf
		t.Errorf("%s: CPU profile missing or not a pprof file: %v", name, err)
	}
	return out
}

// checkOrder checks that the phases appear in the trace in this order.
func checkOrder(t *testing.T, name string, tr []traceLine, phases []string) {
	t.Helper()
	i := 0
	for _, l := range tr {
		if i < len(phases) && l.phase == phases[i] {
			i++
		}
	}
	if i < len(phases) {
		t.Errorf("%s trace lacks %q after %v:\n%v", name, phases[i], phases[:i], tr)
	}
}

func find(tr []traceLine, phase string) traceLine {
	for _, l := range tr {
		if l.phase == phase {
			return l
		}
	}
	return traceLine{}
}
