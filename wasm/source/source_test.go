package source

import (
	"context"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/registry"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
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
