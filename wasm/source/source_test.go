package source

import (
	"context"
	"errors"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/registry"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
	"github.com/google/go-containerregistry/pkg/v1/static"
)

// module is a stand-in for a module's bytes: what is fetched is compared byte for byte.
var module = []byte("\x00asm\x01\x00\x00\x00 a module")

// registryServer is an in-process OCI registry over HTTPS on loopback.
func registryServer(t *testing.T) *httptest.Server {
	t.Helper()
	srv := httptest.NewTLSServer(registry.New(registry.Logger(log.New(io.Discard, "", 0))))
	t.Cleanup(srv.Close)
	return srv
}

func newFetcher(t *testing.T, srv *httptest.Server) *Fetcher {
	t.Helper()
	return New(Config{CacheDir: t.TempDir(), Transport: srv.Client().Transport})
}

func host(srv *httptest.Server) string { return strings.TrimPrefix(srv.URL, "https://") }

func TestPushThenFetch(t *testing.T) {
	srv := registryServer(t)
	f := newFetcher(t, srv)
	ctx := context.Background()
	ref := "registry://" + host(srv) + "/policies/magic:v1"
	byDigest, err := f.Push(ctx, ref, module, map[string]string{"io.kubewarden.policy.title": "magic"})
	if err != nil {
		t.Fatal(err)
	}
	m, err := f.Fetch(ctx, ref, Digest(module))
	if err != nil {
		t.Fatal(err)
	}
	if string(m.Bytes) != string(module) || m.Digest != Digest(module) || m.Cached || m.From != strings.TrimPrefix(byDigest, "registry://") {
		t.Errorf("fetched %+v; pushed %s", m, byDigest)
	}
	// What was pushed is the artifact Kubewarden pushes: the config and layer media types, and
	// the annotations on the manifest.
	r, _ := ParseOCI(byDigest)
	desc, err := remote.Get(r, remote.WithTransport(srv.Client().Transport))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{WasmConfigMediaType, WasmLayerMediaType, `"io.kubewarden.policy.title":"magic"`, "application/vnd.oci.image.manifest.v1+json"} {
		if !strings.Contains(string(desc.Manifest), want) {
			t.Errorf("the manifest lacks %s:\n%s", want, desc.Manifest)
		}
	}

	// With the registry gone: a reference by digest and the tag are served from the cache.
	srv.Close()
	for _, ref := range []string{"oci://" + strings.TrimPrefix(byDigest, "registry://"), ref} {
		m, err := f.Fetch(ctx, ref, "")
		if err != nil || !m.Cached || string(m.Bytes) != string(module) {
			t.Errorf("%s with the registry gone: %+v %v", ref, m, err)
		}
	}
	// A fresh cache has nothing to serve: the error says the registry did not answer and what to do.
	_, err = New(Config{CacheDir: t.TempDir(), Transport: srv.Client().Transport}).Fetch(ctx, ref, "")
	if err == nil || !strings.Contains(err.Error(), "not cached") || !strings.Contains(err.Error(), "wasmkube module pull") {
		t.Errorf("uncached, registry gone: %v", err)
	}
}

func TestFetchRefusesWhatItCannotVerify(t *testing.T) {
	srv := registryServer(t)
	f := newFetcher(t, srv)
	ctx := context.Background()
	ref := "registry://" + host(srv) + "/policies/magic:v1"
	if _, err := f.Push(ctx, ref, module, nil); err != nil {
		t.Fatal(err)
	}
	wrongPin := Digest([]byte("another module"))
	if _, err := f.Fetch(ctx, ref, wrongPin); err == nil || !strings.Contains(err.Error(), "pins "+wrongPin) {
		t.Errorf("wrong pin: %v", err)
	}
	if _, err := f.Fetch(ctx, ref, "sha256:abc"); err == nil || !strings.Contains(err.Error(), "not a sha256 digest") {
		t.Errorf("malformed pin: %v", err)
	}
	// An image that is not a module (a container image's layers).
	img, err := random.Image(100, 1)
	if err != nil {
		t.Fatal(err)
	}
	imgRef, _ := ParseOCI(host(srv) + "/library/app:v1")
	if err := remote.Write(imgRef, img, remote.WithTransport(srv.Client().Transport)); err != nil {
		t.Fatal(err)
	}
	if _, err := f.Fetch(ctx, "registry://"+host(srv)+"/library/app:v1", ""); err == nil || !strings.Contains(err.Error(), "it is not a module") ||
		!strings.Contains(err.Error(), WasmLayerMediaType) {
		t.Errorf("a container image: %v", err)
	}
	// An artifact whose module layer has another media type.
	art, _ := Artifact(module, nil)
	art, _ = mutate.Append(art, mutate.Addendum{Layer: static.NewLayer([]byte("readme"), "text/plain")})
	twoRef, _ := ParseOCI(host(srv) + "/policies/two:v1")
	if err := remote.Write(twoRef, art, remote.WithTransport(srv.Client().Transport)); err != nil {
		t.Fatal(err)
	}
	if _, err := f.Fetch(ctx, "oci://"+host(srv)+"/policies/two:v1", ""); err == nil || !strings.Contains(err.Error(), "it is not a module") {
		t.Errorf("two layers: %v", err)
	}
	if _, err := f.Fetch(ctx, "registry://"+host(srv)+"/policies/nosuch:v1", ""); err == nil || !strings.Contains(err.Error(), "nosuch") {
		t.Errorf("missing tag: %v", err)
	}
}

// TestFetchHTTPS: an https:// module needs its pin; a wrong one is refused and not cached; a
// right one is cached and then served with the server gone; a copy changed in the cache is not.
func TestFetchHTTPS(t *testing.T) {
	served := module
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/magic.wasm" {
			http.NotFound(w, r)
			return
		}
		_, _ = w.Write(served)
	}))
	defer srv.Close()
	f := newFetcher(t, srv)
	ctx := context.Background()
	url := srv.URL + "/magic.wasm"
	if _, err := f.Fetch(ctx, url, ""); err == nil || !strings.Contains(err.Error(), "needs its sha256 pinned") {
		t.Errorf("no pin: %v", err)
	}
	wrongPin := Digest([]byte("another"))
	if _, err := f.Fetch(ctx, url, wrongPin); err == nil || !strings.Contains(err.Error(), "it was not run") {
		t.Errorf("wrong pin: %v", err)
	}
	if _, err := os.Stat(f.blobPath(Digest(module))); !os.IsNotExist(err) {
		t.Errorf("a module fetched against a wrong pin was cached: %v", err)
	}
	if _, err := f.Fetch(ctx, srv.URL+"/nosuch.wasm", Digest(module)); err == nil || !strings.Contains(err.Error(), "404") {
		t.Errorf("missing file: %v", err)
	}
	m, err := f.Fetch(ctx, url, strings.TrimPrefix(Digest(module), "sha256:")) // bare hex is a pin too
	if err != nil || m.Cached || string(m.Bytes) != string(module) {
		t.Fatalf("pinned: %+v %v", m, err)
	}
	srv.Close()
	if m, err := f.Fetch(ctx, url, Digest(module)); err != nil || !m.Cached {
		t.Errorf("cached, server gone: %+v %v", m, err)
	}
	if err := os.WriteFile(f.blobPath(Digest(module)), []byte("tampered"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := f.Fetch(ctx, url, Digest(module)); err == nil {
		t.Error("a cached copy that no longer matches its digest was served")
	}
}

// TestFetchBoundsTheModuleSize: a server that sends more than the limit (over https, or as a
// registry layer) gets an error, not a module; nothing is cached.
func TestFetchBoundsTheModuleSize(t *testing.T) {
	big := make([]byte, 4096)
	files := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		for range 1000 { // 4 MB, far past the limit: the fetcher stops reading at 1 KiB + 1
			if _, err := w.Write(big); err != nil {
				return
			}
		}
	}))
	defer files.Close()
	f := New(Config{CacheDir: t.TempDir(), Transport: files.Client().Transport, MaxModuleSize: 1024})
	if _, err := f.Fetch(context.Background(), files.URL+"/big.wasm", Digest(big)); err == nil || !strings.Contains(err.Error(), "larger than 1024 bytes") {
		t.Errorf("https: %v", err)
	}
	srv := registryServer(t)
	ref := "registry://" + host(srv) + "/policies/big:v1"
	push := New(Config{CacheDir: t.TempDir(), Transport: srv.Client().Transport})
	if _, err := push.Push(context.Background(), ref, big, nil); err != nil {
		t.Fatal(err)
	}
	small := New(Config{CacheDir: t.TempDir(), Transport: srv.Client().Transport, MaxModuleSize: 1024})
	if _, err := small.Fetch(context.Background(), ref, ""); err == nil || !strings.Contains(err.Error(), "more than the limit of 1024") {
		t.Errorf("registry: %v", err)
	}
}

// TestFetchFallsBackOnlyWhenUnreachable: a tag the registry says is gone (404) is an error, not
// the old cached copy; a cache record pointing a reference at another module is not served.
func TestFetchFallsBackOnlyWhenUnreachable(t *testing.T) {
	srv := registryServer(t)
	f := newFetcher(t, srv)
	ctx := context.Background()
	ref := "registry://" + host(srv) + "/policies/magic:v1"
	byDigest, err := f.Push(ctx, ref, module, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Fetch(ctx, ref, ""); err != nil {
		t.Fatal(err)
	}
	tag, _ := ParseOCI(ref)
	if err := remote.Delete(tag, remote.WithTransport(srv.Client().Transport)); err != nil {
		t.Fatal(err)
	}
	f.recent = map[string]recentFetch{} // as a later start would
	if m, err := f.Fetch(ctx, ref, ""); err == nil {
		t.Errorf("a deleted tag was served from the cache: %+v", m)
	}
	// A record that points the reference by digest at another module (a blob that matches its
	// own digest) is caught by the cached manifest, which names the real layer.
	other := []byte("\x00asm\x01\x00\x00\x00 another")
	if err := f.writeBlob(Digest(other), other); err != nil {
		t.Fatal(err)
	}
	r, _ := ParseOCI(byDigest)
	rec := `{"ref":"` + r.String() + `","manifestDigest":"` + strings.SplitN(byDigest, "@", 2)[1] + `","digest":"` + Digest(other) + `"}`
	if err := os.WriteFile(f.refPath(r.String()), []byte(rec), 0o600); err != nil {
		t.Fatal(err)
	}
	srv.Close()
	if m, err := f.Fetch(ctx, byDigest, ""); err == nil && string(m.Bytes) == string(other) {
		t.Error("a tampered cache record made the fetcher serve another module")
	}
}

// TestPlainHTTPOnlyOnThisHost: go-containerregistry would fall back to http for a private
// address; the fetcher refuses it, and allows it only to a registry on this host.
func TestPlainHTTPOnlyOnThisHost(t *testing.T) {
	f := New(Config{CacheDir: t.TempDir()})
	if _, err := f.Fetch(context.Background(), "registry://10.255.255.1:5000/p/m:v1", ""); err == nil || !strings.Contains(err.Error(), "refusing plain HTTP") {
		t.Errorf("private address: %v", err)
	}
	plain := httptest.NewServer(registry.New(registry.Logger(log.New(io.Discard, "", 0))))
	defer plain.Close()
	local := "registry://" + strings.TrimPrefix(plain.URL, "http://") + "/p/m:v1"
	if _, err := f.Push(context.Background(), local, module, nil); err != nil {
		t.Fatalf("a registry on loopback over http: %v", err)
	}
	if m, err := f.Fetch(context.Background(), local, ""); err != nil || string(m.Bytes) != string(module) {
		t.Errorf("fetch from loopback over http: %v", err)
	}
}

// TestFetchBoundsASilentRegistry: a registry that accepts the connection and never answers
// holds a tag's fetch no longer than TagTimeout; the copy pulled before then serves.
func TestFetchBoundsASilentRegistry(t *testing.T) {
	var silent atomic.Bool
	release := make(chan struct{})
	reg := registry.New(registry.Logger(log.New(io.Discard, "", 0)))
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if silent.Load() {
			<-release
			return
		}
		reg.ServeHTTP(w, r)
	}))
	defer srv.Close()
	defer close(release) // before the server closes: it waits for its handlers
	ref := "registry://" + host(srv) + "/policies/magic:v1"
	f := New(Config{CacheDir: t.TempDir(), Transport: srv.Client().Transport, TagTimeout: 300 * time.Millisecond})
	if _, err := f.Push(context.Background(), ref, module, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := f.Fetch(context.Background(), ref, ""); err != nil {
		t.Fatal(err)
	}
	silent.Store(true)
	f.recent = map[string]recentFetch{} // as a later start would
	began := time.Now()
	m, err := f.Fetch(context.Background(), ref, "")
	if took := time.Since(began); err != nil || !m.Cached || took > 5*time.Second {
		t.Errorf("silent registry: %v, cached %v, after %v", err, m != nil && m.Cached, took)
	}
}

// TestUnreachableWhenHTTPSTimesOut: a registry on loopback is pinged over https and http at
// once; an https timeout beside http's 400 ("HTTP request to an HTTPS server") is a registry
// that did not answer (cache serves), while a plain 404 or 401 is an answer (it does not).
func TestUnreachableWhenHTTPSTimesOut(t *testing.T) {
	badRequest := &transport.Error{StatusCode: http.StatusBadRequest}
	for _, c := range []struct {
		name string
		err  error
		want bool
	}{
		{"https timed out, http 400", errors.Join(context.DeadlineExceeded, badRequest), true},
		{"https refused, http 400", errors.Join(&net.OpError{Op: "dial", Err: errors.New("connection refused")}, badRequest), true},
		{"no such tag", &transport.Error{StatusCode: http.StatusNotFound}, false},
		{"no access", &transport.Error{StatusCode: http.StatusUnauthorized}, false},
		{"registry failed", &transport.Error{StatusCode: http.StatusBadGateway}, true},
		{"not a module", &wrongArtifactError{}, false},
	} {
		if got := unreachable(c.err); got != c.want {
			t.Errorf("%s: unreachable = %v, want %v", c.name, got, c.want)
		}
	}
}
