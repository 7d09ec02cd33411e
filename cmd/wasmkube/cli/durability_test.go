package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/wasmkube/wasmkube/datadir"
)

// ReliabilityEnv set to 1 runs the reliability tests at full size (`make reliability`);
// otherwise `go test` runs a small variant.
const ReliabilityEnv = "WASMKUBE_RELIABILITY"

// durabilitySeedEnv replays a run: its value is the seed a failed run logged.
const durabilitySeedEnv = "WASMKUBE_DURABILITY_SEED"

// killPoint is where a start-up is interrupted: after the first output line containing line,
// once until (if set) holds for the data dir, after a random delay below jitter.
type killPoint struct {
	name, line string
	until      func(dataDir string) bool
	jitter     time.Duration
}

var (
	// On a fresh data dir: as soon as the first PKI file is on disk.
	killMidPKI = killPoint{name: "mid-PKI", line: "Starting profile", until: func(dataDir string) bool {
		files, _ := os.ReadDir(filepath.Join(dataDir, "pki"))
		return len(files) > 0
	}}
	// Within 300 ms of etcd's member directory appearing (at once on existing data): on a fresh
	// data dir, while etcd writes its first WAL and snapshot files.
	killMidEtcd = killPoint{name: "mid-etcd start", line: "✓ pki ready", jitter: 300 * time.Millisecond, until: func(dataDir string) bool {
		_, err := os.Stat(filepath.Join(dataDir, "etcd", "member"))
		return err == nil
	}}
	killMidAPIServer = killPoint{name: "mid-kube-apiserver start", line: "✓ etcd ready", jitter: 500 * time.Millisecond}
)

type durabilitySize struct {
	rounds  int
	writes  int // acknowledged writes at least, over all rounds
	writers int
	kills   [][]killPoint // the start-ups killed before each round, one after another; cycled
}

func durabilitySizeFromEnv() durabilitySize {
	if os.Getenv(ReliabilityEnv) == "1" {
		return durabilitySize{rounds: 5, writes: 1000, writers: 8, kills: [][]killPoint{
			{killMidPKI, killMidEtcd}, {killMidEtcd}, {killMidAPIServer}, {killMidEtcd}, {killMidEtcd, killMidAPIServer},
		}}
	}
	return durabilitySize{rounds: 2, writes: 200, writers: 8, kills: [][]killPoint{{killMidPKI, killMidEtcd}, {killMidEtcd}}}
}

// TestDurability runs `wasmkube up` (profile minimal) as a child process and, in each round:
// interrupts start-ups with SIGKILL (mid-PKI and mid-etcd start on the fresh data dir, then
// mid-etcd or mid-kube-apiserver start on the existing data), starts again, checks that every write acknowledged so far is there, writes ConfigMaps from
// several clients and SIGKILLs the process at a random moment while writes are in flight.
// After the last round, it simulates a data dir of an older wasmkube with a lost CA key: `up`
// refuses it and says what to do, `up --new-ca` starts it, and every acknowledged write is there.
//
// The data dir is too long for a unix socket path: etcd's socket goes to $XDG_RUNTIME_DIR.
// Small by default; WASMKUBE_RELIABILITY=1 (make reliability) runs 5 rounds and 1,000 writes.
func TestDurability(t *testing.T) {
	size := durabilitySizeFromEnv()
	seed := uint64(time.Now().UnixNano())
	if s := os.Getenv(durabilitySeedEnv); s != "" {
		var err error
		if seed, err = strconv.ParseUint(s, 10, 64); err != nil {
			t.Fatalf("%s: %v", durabilitySeedEnv, err)
		}
	}
	t.Logf("seed %d (replay: %s=%d)", seed, durabilitySeedEnv, seed)
	rng := rand.New(rand.NewPCG(seed, seed))

	e := newEnv(t)
	runtimeDir := filepath.Join(e.root, "run")
	e.vars = append(e.vars, "XDG_RUNTIME_DIR="+runtimeDir)
	dataDir := filepath.Join(e.root, "data", strings.Repeat("a-long-directory-name-", 4))
	args := []string{"--profile", "minimal", "--port", "0", "--data-dir", dataDir}
	began := time.Now()

	acked := map[string]string{}
	var unknown []string
	perRound := (size.writes + size.rounds - 1) / size.rounds
	startsKilled := 0
	for round := range size.rounds {
		var killed []string
		for _, kp := range size.kills[round%len(size.kills)] {
			killDuringStart(t, e.startUp(args...), kp, rng, dataDir)
			killed = append(killed, kp.name)
			startsKilled++
		}
		up := e.startUp(args...)
		up.waitReady(t)
		if round == 0 {
			checkSocketOutsideLongDataDir(t, dataDir, runtimeDir)
		}
		c := kubeClient(t, dataDir)
		checkPresent(t, c, acked, fmt.Sprintf("round %d, after start-ups killed %v", round, killed))
		killAt := perRound + rng.IntN(perRound)
		got, lost := writeUntilKilled(t, c, up, round, killAt, size.writers)
		for k, v := range got {
			acked[k] = v
		}
		unknown = append(unknown, lost...)
		t.Logf("round %d: start-ups killed %v; %d writes acknowledged, then SIGKILL with %d in flight", round, killed, len(got), len(lost))
	}

	// A data dir of an older wasmkube (no marker) whose CA key is lost.
	if err := os.Remove(filepath.Join(dataDir, datadir.MarkerName)); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(filepath.Join(dataDir, "pki", "ca.key")); err != nil {
		t.Fatal(err)
	}
	code, out, stderr := e.run(append([]string{"up"}, args...)...)
	if code == 0 || !strings.Contains(stderr, "holds cluster data") || !strings.Contains(stderr, "ca.key") || !strings.Contains(stderr, "--new-ca") {
		t.Errorf("up on cluster data with a lost CA key: exit %d, stderr %q; want a refusal that says what to do", code, stderr)
	}
	if !strings.Contains(out, "adopted") {
		t.Errorf("up on a data dir without marker did not say it adopted it:\n%s", out)
	}
	if m, err := datadir.ReadMarker(dataDir); err != nil || !m.Adopted {
		t.Errorf("marker after adoption: %+v %v", m, err)
	}
	up := e.startUp(append(args, "--new-ca")...)
	up.waitReady(t)
	if !strings.Contains(up.text(), "NEW CA over existing cluster data") {
		t.Errorf("up --new-ca did not say it made a new CA:\n%s", up.text())
	}
	if entries, _ := os.ReadDir(filepath.Join(dataDir, "pki")); len(entries) != 14 {
		t.Errorf("pki/ holds %d files, want 14 (temporary files of killed writes left?)", len(entries))
	}
	c := kubeClient(t, dataDir)
	checkPresent(t, c, acked, "after the last round")
	present := countPresent(t, c, unknown)
	if code := up.interrupt(t); code != 0 {
		t.Errorf("exit %d after SIGINT:\n%s", code, up.text())
	}
	t.Logf("durability: %d rounds, %d writes acknowledged, 0 lost, %d in flight at a kill (%d of them present), %d start-ups killed, %s",
		size.rounds, len(acked), len(unknown), present, startsKilled, time.Since(began).Round(time.Second))
}

// killDuringStart SIGKILLs a starting `up` at kp and logs what the data dir holds then.
func killDuringStart(t *testing.T, up *upProcess, kp killPoint, rng *rand.Rand, dataDir string) {
	t.Helper()
	up.waitLine(t, kp.line)
	for deadline := time.Now().Add(10 * time.Second); kp.until != nil && !kp.until(dataDir) && time.Now().Before(deadline); {
		time.Sleep(100 * time.Microsecond)
	}
	if kp.jitter > 0 {
		time.Sleep(time.Duration(rng.Int64N(int64(kp.jitter))))
	}
	up.signal(t, syscall.SIGKILL)
	if strings.Contains(up.text(), "Press Ctrl-C") {
		t.Logf("the start meant to be killed %s was already ready", kp.name)
	}
	pkiFiles, _ := os.ReadDir(filepath.Join(dataDir, "pki"))
	_, etcdErr := os.Stat(filepath.Join(dataDir, "etcd", "member"))
	wal, _ := filepath.Glob(filepath.Join(dataDir, "etcd", "member", "wal", "*"))
	t.Logf("killed %s: %d files in pki/, etcd member dir present: %v, %d files in its wal/", kp.name, len(pkiFiles), etcdErr == nil, len(wal))
}

func checkSocketOutsideLongDataDir(t *testing.T, dataDir, runtimeDir string) {
	t.Helper()
	socks, _ := filepath.Glob(filepath.Join(runtimeDir, "wasmkube", "etcd-*.sock"))
	if len(socks) != 1 {
		t.Errorf("etcd sockets in %s/wasmkube: %v, want one (the data dir is too long for a socket path)", runtimeDir, socks)
	}
	if fi, err := os.Stat(filepath.Join(runtimeDir, "wasmkube")); err != nil || fi.Mode().Perm() != 0o700 {
		t.Errorf("socket dir: %v %v, want 0700", fi, err)
	}
	if _, err := os.Stat(filepath.Join(dataDir, "etcd.sock")); err == nil {
		t.Errorf("a socket in the long data dir %s", dataDir)
	}
}

func kubeClient(t *testing.T, dataDir string) kubernetes.Interface {
	t.Helper()
	cfg, err := clientcmd.BuildConfigFromFlags("", filepath.Join(dataDir, "kubeconfig"))
	if err != nil {
		t.Fatal(err)
	}
	cfg.QPS, cfg.Burst, cfg.Timeout = 1000, 1000, 20*time.Second
	return kubernetes.NewForConfigOrDie(cfg)
}

// writeUntilKilled creates ConfigMaps from writers goroutines and SIGKILLs up once killAt of
// them are acknowledged. It returns the acknowledged writes (name → payload) and the names of
// those in flight at the kill, whose outcome is unknown.
func writeUntilKilled(t *testing.T, c kubernetes.Interface, up *upProcess, round, killAt, writers int) (map[string]string, []string) {
	t.Helper()
	var (
		mu      sync.Mutex
		acked   = map[string]string{}
		unknown []string
		seq     atomic.Int64
		killed  atomic.Bool
		kill    sync.Once
		wg      sync.WaitGroup
	)
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for !killed.Load() {
				n := seq.Add(1)
				name := fmt.Sprintf("dur-r%d-%06d", round, n)
				payload := fmt.Sprintf("round %d write %d writer %d", round, n, w)
				cm := &corev1.ConfigMap{
					ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{"durability": "1"}},
					Data:       map[string]string{"payload": payload},
				}
				_, err := c.CoreV1().ConfigMaps("default").Create(context.Background(), cm, metav1.CreateOptions{})
				mu.Lock()
				switch {
				case err == nil:
					acked[name] = payload
					if len(acked) >= killAt {
						kill.Do(func() { killed.Store(true); _ = up.cmd.Process.Signal(syscall.SIGKILL) })
					}
				case killed.Load():
					unknown = append(unknown, name)
				default:
					t.Errorf("write %s failed before the kill: %v", name, err)
					killed.Store(true)
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	up.waitExit(t)
	return acked, unknown
}

// listDurability returns the durability ConfigMaps by name, with their payloads.
func listDurability(t *testing.T, c kubernetes.Interface) map[string]string {
	t.Helper()
	out := map[string]string{}
	opts := metav1.ListOptions{LabelSelector: "durability=1", Limit: 500}
	for {
		l, err := c.CoreV1().ConfigMaps("default").List(context.Background(), opts)
		if err != nil {
			t.Fatalf("list: %v", err)
		}
		for _, cm := range l.Items {
			out[cm.Name] = cm.Data["payload"]
		}
		if l.Continue == "" {
			return out
		}
		opts.Continue = l.Continue
	}
}

func checkPresent(t *testing.T, c kubernetes.Interface, acked map[string]string, when string) {
	t.Helper()
	have := listDurability(t, c)
	var lost []string
	for name, payload := range acked {
		if have[name] != payload {
			lost = append(lost, name)
		}
	}
	if len(lost) > 0 {
		b, _ := json.Marshal(lost)
		t.Fatalf("%s: %d of %d acknowledged writes lost or changed: %s", when, len(lost), len(acked), b)
	}
}

func countPresent(t *testing.T, c kubernetes.Interface, names []string) int {
	t.Helper()
	have := listDurability(t, c)
	n := 0
	for _, name := range names {
		if _, ok := have[name]; ok {
			n++
		}
	}
	return n
}
