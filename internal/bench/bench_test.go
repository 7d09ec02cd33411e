package bench

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"net/http"
	"path/filepath"
	"strings"
	"testing"

	admissionv1 "k8s.io/api/admission/v1"
	authenticationv1 "k8s.io/api/authentication/v1"
	authorizationv1 "k8s.io/api/authorization/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"

	"github.com/wasmkube/wasmkube/profiles"
)

// The webhook the comparisons run answers with the same rules as the modules it is compared with.
func TestWebhookAnswers(t *testing.T) {
	hook, err := startWebhook()
	if err != nil {
		t.Fatal(err)
	}
	defer hook.Close()
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(hook.CAData) {
		t.Fatal("no CA")
	}
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	post := func(path string, in, out any) {
		t.Helper()
		body, _ := json.Marshal(in)
		resp, err := client.Post(hook.URL+path, "application/json", bytes.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
			t.Fatal(err)
		}
	}
	for data, allowed := range map[string]bool{`{"a":"1"}`: true, `{"` + forbiddenKey + `":"x"}`: false} {
		var review admissionv1.AdmissionReview
		post("/validate", admissionv1.AdmissionReview{Request: &admissionv1.AdmissionRequest{UID: "u1",
			Kind:   metaKind("ConfigMap"),
			Object: runtime.RawExtension{Raw: []byte(`{"kind":"ConfigMap","data":` + data + `}`)}}}, &review)
		if review.Response == nil || review.Response.Allowed != allowed || review.Response.UID != "u1" {
			t.Errorf("data %s: response %+v, want allowed=%v", data, review.Response, allowed)
		}
	}
	for token, want := range map[string]bool{webhookToken: true, webhookToken + "-x1": true, "other": false} {
		var review authenticationv1.TokenReview
		post("/authenticate", authenticationv1.TokenReview{Spec: authenticationv1.TokenReviewSpec{Token: token}}, &review)
		if review.Status.Authenticated != want || (want && review.Status.User.Username != webhookUser) || review.Spec.Token != "" {
			t.Errorf("token %q: %+v (the token must not be echoed), want authenticated=%v", token, review, want)
		}
	}
	for group, want := range map[string]bool{accessGroup: true, "other": false} {
		var review authorizationv1.SubjectAccessReview
		post("/authorize", authorizationv1.SubjectAccessReview{Spec: authorizationv1.SubjectAccessReviewSpec{
			Groups: []string{group}, ResourceAttributes: &authorizationv1.ResourceAttributes{Verb: "get", Resource: "configmaps"}}}, &review)
		if review.Status.Allowed != want {
			t.Errorf("group %s: %+v, want allowed=%v", group, review.Status, want)
		}
	}
}

// The profiles the comparisons start are valid profiles.
func TestProfilesParse(t *testing.T) {
	hook := &webhookServer{URL: "https://127.0.0.1:1", CAData: []byte("x")}
	ways, err := accessWays(t.TempDir(), strings.Repeat("a", 40), hook)
	if err != nil {
		t.Fatal(err)
	}
	sources := map[string]string{"admission": admissionProfile(filepath.Join("..", "..", rustModule))}
	for _, w := range ways {
		sources[w.name] = w.profile
	}
	for name, src := range sources {
		if _, err := profiles.Parse([]byte(src), name+".yaml"); err != nil {
			t.Errorf("%s: %v\n%s", name, err, src)
		}
	}
}

func TestParseP50(t *testing.T) {
	out := `goos: linux
BenchmarkKubewardenPolicy/waPC/safe-annotations-2         	     500	    140000 ns/op	       137.0 p50-µs	       199.0 p99-µs
BenchmarkKubewardenPolicy/WASI/unique-ingress-host_(no_lookup,_back_to_back)-2         	     500	   2800000 ns/op	      2759 p50-µs	      3100 p99-µs
BenchmarkKubewardenPolicy/waPC/safe-annotations-2         	     500	    150000 ns/op	       141.0 p50-µs	       210.0 p99-µs
PASS`
	rows, err := parseP50(out, "BenchmarkKubewardenPolicy")
	if err != nil {
		t.Fatal(err)
	}
	if len(rows) != 2 || rows[0].Name != "waPC/safe-annotations" || len(rows[0].P50) != 2 || rows[0].P50.Median() != 139 {
		t.Fatalf("rows %+v", rows)
	}
	if rows[1].Name != "WASI/unique-ingress-host_(no_lookup,_back_to_back)" || rows[1].P50[0] != 2759 {
		t.Fatalf("row 1 %+v", rows[1])
	}
	if _, err := parseP50("PASS\n", "BenchmarkX"); err == nil {
		t.Fatal("no rows: want an error")
	}
}

func TestSeries(t *testing.T) {
	s := Series{3, 1, 2, 10}
	if s.Min() != 1 || s.Max() != 10 || s.Median() != 2.5 {
		t.Fatalf("min %v median %v max %v", s.Min(), s.Median(), s.Max())
	}
	if got := s.Format(1); got != "2.5 (1.0–10.0)" {
		t.Fatalf("Format: %q", got)
	}
	if got := Ratio(Series{1}, Series{4}); got != "0.25" {
		t.Fatalf("Ratio: %q", got)
	}
	if Ratio(Series{1}, nil) != "n/a" || (Series{}).Format(0) != "n/a" {
		t.Fatal("empty series")
	}
}

func TestPartOf(t *testing.T) {
	for sym, want := range map[string]string{
		"runtime.mallocgc":                            stdPart,
		"k8s.io/kubectl/pkg/cmd.NewKubectlCommand":    "built-in kubectl (k8s.io/kubectl, cli-runtime)",
		"type:*k8s.io/api/core/v1.Pod":                "API types, client-go, apimachinery",
		"github.com/tetratelabs/wazero.NewRuntime":    "wazero",
		"github.com/wasmkube/wasmkube/wasm.(*Module)": "wasmkube's own packages",
		"github.com/some/other.F":                     otherPart,
	} {
		if got := partOf(sym); got != want {
			t.Errorf("%s: %q, want %q", sym, got, want)
		}
	}
}

// A report renders every section, with the verdicts its figures call for.
func TestMarkdown(t *testing.T) {
	rep := &Report{
		Config: Config{Rounds: 2},
		Start: []StartRow{
			{Name: "wasmkube minimal, warm", Ready: Series{0.8, 0.9}, RSS: Series{200, 210}, Stop: Series{0.1, 0.2}},
			{Name: "etcd + kube-apiserver binaries, warm", Ready: Series{2, 2.2}, RSS: Series{300}, Stop: Series{1}},
			{Name: "wasmkube demo, warm", Ready: Series{1.2, 1.3}, RSS: Series{320}, Stop: Series{0.2}},
			{Name: bareStartRow, Ready: Series{1.1, 1.2}, RSS: Series{300}, Stop: Series{0.2}},
		},
		Workloads: &WorkloadResult{Pods: 1000, Nodes: 10, Scheduled: Series{4, 5}, Running: Series{6, 21}, Deleted: Series{4}},
		Admit: &AdmissionResult{Creates: 10, Clients: 16, Clusters: []AdmissionCluster{
			{Added: map[string]Series{wayWASM: {60}, wayRust: {90}, wayCEL: {40}, wayWebhook: {600}}, AddedP99: map[string]Series{}, Throughput: map[string]Series{wayWASM: {0.97}, wayRust: {0.9}}},
			{Label: "abc123", Added: map[string]Series{wayWASM: {300}}, AddedP99: map[string]Series{}, Throughput: map[string]Series{}},
		}},
		Binary: &BinaryResult{FileMB: 289, StrippedMB: 212, Parts: []BinaryPart{{Name: "a", EstimateMB: 1}, {Name: "b", EstimateMB: 2}}},
	}
	var b strings.Builder
	if err := rep.Markdown(&b); err != nil {
		t.Fatal(err)
	}
	md := b.String()
	for _, want := range []string{
		"| wasmkube minimal, warm | 0.85 (0.80–0.90) | 205 (200–210) | 0.15 (0.10–0.20) |",
		"warm start ≤ 1.0 s: minimal 0.85 s, demo 1.25 s: **not met**",
		"minimal/baseline 0.40: **met**",
		"- WASM module, Go (magic-validate):\n  - added ≤ 2× CEL's: 1.50× (60 vs 40 µs): **met**",
		"  - added ≤ 0.1× the webhook's: 0.10× (60 vs 600 µs): **met**\n  - throughput ≥ 0.95× no policy: 0.97: **met**",
		"- WASM module, Rust (magic-validate-rust):\n  - added ≤ 2× CEL's: 2.25× (90 vs 40 µs): **not met**",
		"| WASM module, Go (magic-validate) — base abc123 | 300 |",
		"stripped (without the symbol\ntable and DWARF",
		"| b | 0.0 | 0.0 | 2 |\n| a | 0.0 | 0.0 | 1 |",
		"- warm start +≤ 0.1 s: +0.10 s (1.25 vs 1.15 s): **met**",
		"- RSS at ready +≤ 30 MB: +20 MB (320 vs 300 MB): **met**",
		"| 1000 | 4.50 (4.00–5.00) | 13.50 (6.00–21.00) | 4.00 |",
		"scheduled and Running in ≤ 20 s: 13.50 s: **not met**",
	} {
		if !strings.Contains(md, want) {
			t.Errorf("report lacks %q:\n%s", want, md)
		}
	}
}

// TestMarkdownCommand: the report names the command that writes it, make bench or a
// before/after make bench-compare.
func TestMarkdownCommand(t *testing.T) {
	for _, c := range []struct {
		cfg  Config
		want string
	}{
		{Config{}, "make bench   # = go run ./internal/cmd/wasmkube-bench -o docs/benchmarks.md\n"},
		{Config{Base: "abc123", Steps: []string{"start", "admission"}},
			"make bench-compare BASE=abc123   # = go run ./internal/cmd/wasmkube-bench -base abc123 -only start,admission -o docs/benchmarks-before-after.md\n"},
	} {
		var b strings.Builder
		if err := (&Report{Config: c.cfg}).Markdown(&b); err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(b.String(), c.want) {
			t.Errorf("report of %+v lacks %q:\n%s", c.cfg, c.want, b.String())
		}
	}
}

func metaKind(kind string) metav1.GroupVersionKind {
	return metav1.GroupVersionKind{Version: "v1", Kind: kind}
}
