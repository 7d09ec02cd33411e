// Package source fetches modules from where a profile names them beyond the local disk: an
// https:// URL pinned by the module's sha256, or an OCI registry (registry://HOST/REPO:TAG, as
// Kubewarden names policies, or oci://…), pulled as the artifact Kubewarden and wasm-to-oci push:
// one layer of WasmLayerMediaType. Fetched modules are kept in a cache by the digest of their
// bytes, so a module once fetched is used offline.
//
// The registry protocol, authentication (~/.docker/config.json) and manifest handling are
// go-containerregistry's; this package only says which artifact is a module and what a verified
// module is.
package source

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"time"

	"github.com/adrg/xdg"
)

// The media types of a WebAssembly module pushed to an OCI registry (Kubewarden's policy-fetcher,
// wasm-to-oci): the artifact's config and its one layer, the module itself.
const (
	WasmConfigMediaType = "application/vnd.wasm.config.v1+json"
	WasmLayerMediaType  = "application/vnd.wasm.content.layer.v1+wasm"
)

// The schemes of the references Fetch takes.
const (
	SchemeHTTPS    = "https://"
	SchemeRegistry = "registry://"
	SchemeOCI      = "oci://"
)

// MaxModuleSize bounds a fetched module (a Go module is 3–20 MB).
const MaxModuleSize = 128 << 20

// DefaultTagTimeout bounds asking a registry what a tag names; past it, a cached copy serves.
const DefaultTagTimeout = 10 * time.Second

// fetchedRecently is how long a tag's answer is reused without asking the registry again (one
// load reads a module more than once: its grants are checked, then it is loaded).
const fetchedRecently = 5 * time.Second

// IsRemote reports whether ref names a module Fetch fetches (https://, registry://, oci://).
func IsRemote(ref string) bool {
	return strings.HasPrefix(ref, SchemeHTTPS) || strings.HasPrefix(ref, SchemeRegistry) || strings.HasPrefix(ref, SchemeOCI)
}

var digestPattern = regexp.MustCompile(`^sha256:[0-9a-f]{64}$`)

// NormalizeDigest returns pin as "sha256:HEX" (HEX alone is taken too), or an error saying what a
// pin looks like.
func NormalizeDigest(pin string) (string, error) {
	d := pin
	if !strings.HasPrefix(d, "sha256:") {
		d = "sha256:" + d
	}
	if !digestPattern.MatchString(d) {
		return "", fmt.Errorf("%q is not a sha256 digest: give sha256:HEX (64 lower-case hex digits, e.g. from `sha256sum FILE` or `wasmkube module pull`)", pin)
	}
	return d, nil
}

// Digest is the digest of b, "sha256:HEX".
func Digest(b []byte) string {
	sum := sha256.Sum256(b)
	return "sha256:" + hex.EncodeToString(sum[:])
}

// DefaultCacheDir is where fetched modules are kept: $XDG_CACHE_HOME/wasmkube/sources.
func DefaultCacheDir() string { return filepath.Join(xdg.CacheHome, "wasmkube", "sources") }

// Config configures a Fetcher.
type Config struct {
	// CacheDir keeps fetched modules; DefaultCacheDir() when empty.
	CacheDir string
	// Transport makes the HTTP requests (to trust another CA, say); http.DefaultTransport when
	// nil. Trusted CAs are the system's, or those of $SSL_CERT_FILE.
	Transport http.RoundTripper
	// TagTimeout bounds asking a registry what a tag names; DefaultTagTimeout when zero.
	TagTimeout time.Duration
	// Logger gets a warning when a cached copy serves because the registry did not answer.
	Logger *slog.Logger
	// MaxModuleSize bounds a fetched module; MaxModuleSize when zero.
	MaxModuleSize int64
}

// Fetcher fetches modules and keeps them in its cache. It is safe for concurrent use.
type Fetcher struct {
	cfg    Config
	mu     sync.Mutex
	recent map[string]recentFetch
}

type recentFetch struct {
	digest string
	at     time.Time
}

// New returns a Fetcher of cfg.
func New(cfg Config) *Fetcher {
	if cfg.CacheDir == "" {
		cfg.CacheDir = DefaultCacheDir()
	}
	if cfg.Transport == nil {
		cfg.Transport = http.DefaultTransport
	}
	cfg.Transport = httpsOnly{cfg.Transport}
	if cfg.TagTimeout == 0 {
		cfg.TagTimeout = DefaultTagTimeout
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.MaxModuleSize == 0 {
		cfg.MaxModuleSize = MaxModuleSize
	}
	return &Fetcher{cfg: cfg, recent: map[string]recentFetch{}}
}

// Module is a fetched module.
type Module struct {
	// Bytes are the module.
	Bytes []byte
	// Digest is the digest of Bytes, "sha256:HEX".
	Digest string
	// From says where it came from: the URL, or the registry reference with the manifest's digest.
	From string
	// Cached says the cache served it without asking the network.
	Cached bool
}

// Fetch fetches the module ref names and verifies it: against pin (its digest, "sha256:HEX"),
// when given, and always against the digests the source publishes.
//
// # Notes
//
//   - https:// needs pin: a URL's content can change under it. A pinned module in the cache is
//     used without the network.
//   - registry:// and oci:// references (HOST/REPO:TAG or HOST/REPO@sha256:…) are pulled as an
//     OCI artifact whose one module layer has WasmLayerMediaType; anything else is refused. A
//     reference by digest in the cache is used without the network; a tag is asked of the
//     registry (bounded by TagTimeout), and when it does not answer, the copy pulled last serves,
//     with a warning.
//   - A module whose bytes do not match pin, or a cached copy whose bytes no longer match its
//     digest, is never returned.
func (f *Fetcher) Fetch(ctx context.Context, ref, pin string) (*Module, error) {
	if pin != "" {
		var err error
		if pin, err = NormalizeDigest(pin); err != nil {
			return nil, err
		}
	}
	var (
		m   *Module
		err error
	)
	switch {
	case strings.HasPrefix(ref, SchemeHTTPS):
		m, err = f.fetchHTTPS(ctx, ref, pin)
	case strings.HasPrefix(ref, SchemeRegistry), strings.HasPrefix(ref, SchemeOCI):
		m, err = f.fetchOCI(ctx, ref)
	default:
		return nil, fmt.Errorf("%s: not a remote module (https://, registry:// or oci://)", ref)
	}
	if err != nil {
		return nil, err
	}
	if pin != "" && m.Digest != pin {
		return nil, fmt.Errorf("%s: the module's digest is %s, but the profile pins %s: the module changed, or the pin is wrong; it was not run", ref, m.Digest, pin)
	}
	return m, nil
}

// fetchHTTPS fetches a pinned module from an https:// URL, or its cached copy.
func (f *Fetcher) fetchHTTPS(ctx context.Context, url, pin string) (*Module, error) {
	if pin == "" {
		return nil, fmt.Errorf("%s: a module fetched over https needs its sha256 pinned (sha256: in the profile entry): the URL's content can change", url)
	}
	if b, err := f.readBlob(pin); err == nil {
		return &Module{Bytes: b, Digest: pin, From: url, Cached: true}, nil
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", url, err)
	}
	resp, err := (&http.Client{Transport: f.cfg.Transport, Timeout: 2 * time.Minute}).Do(req)
	if err != nil {
		return nil, fmt.Errorf("fetch %s: %w (not cached yet: the module is needed once online)", url, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("fetch %s: %s", url, resp.Status)
	}
	b, err := f.readLimited(resp.Body)
	if err != nil {
		return nil, fmt.Errorf("fetch %s: %w", url, err)
	}
	m := &Module{Bytes: b, Digest: Digest(b), From: url}
	if m.Digest == pin { // a module that does not match is not cached
		if err := f.writeBlob(m.Digest, b); err != nil {
			return nil, err
		}
	}
	return m, nil
}

// httpsOnly refuses plain-HTTP requests except to this host. go-containerregistry falls back to
// http for registries on private addresses (kind's network included) and on loopback; off this
// host, anyone on the network path could then swap a module pulled by tag, or read credentials.
type httpsOnly struct{ next http.RoundTripper }

func (t httpsOnly) RoundTrip(req *http.Request) (*http.Response, error) {
	if h := req.URL.Hostname(); req.URL.Scheme != "https" && !isLoopback(h) {
		return nil, fmt.Errorf("refusing plain HTTP to %s: modules are fetched over https (only a registry on this host may use http)", req.URL.Host)
	}
	return t.next.RoundTrip(req)
}

func isLoopback(host string) bool {
	if host == "localhost" || strings.HasSuffix(host, ".localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// readLimited reads a module from r, up to the size limit: a hostile server cannot make the
// fetcher hold more.
func (f *Fetcher) readLimited(r io.Reader) ([]byte, error) {
	limit := f.cfg.MaxModuleSize
	b, err := io.ReadAll(io.LimitReader(r, limit+1))
	if err != nil {
		return nil, err
	}
	if int64(len(b)) > limit {
		return nil, fmt.Errorf("the module is larger than %d bytes, the limit: it was not read further", limit)
	}
	return b, nil
}

// blobPath is where the module of digest is cached.
func (f *Fetcher) blobPath(digest string) string {
	return filepath.Join(f.cfg.CacheDir, "blobs", "sha256", strings.TrimPrefix(digest, "sha256:"))
}

// readBlob returns the cached module of digest, checked against it.
func (f *Fetcher) readBlob(digest string) ([]byte, error) {
	b, err := os.ReadFile(f.blobPath(digest))
	if err != nil {
		return nil, err
	}
	if Digest(b) != digest {
		return nil, fmt.Errorf("the cached copy %s no longer matches its digest %s: it is fetched again", f.blobPath(digest), digest)
	}
	return b, nil
}

// writeBlob caches the module b of digest.
func (f *Fetcher) writeBlob(digest string, b []byte) error {
	if err := writeFileAtomic(f.blobPath(digest), b); err != nil {
		return fmt.Errorf("cache the module: %w", err)
	}
	return nil
}

// writeFileAtomic writes data to a temporary file beside path, then renames it over path, so a
// reader (another wasmkube) never sees a partial file; directories are made 0700.
func writeFileAtomic(path string, data []byte) (err error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			_ = os.Remove(tmp.Name())
		}
	}()
	if _, err = tmp.Write(data); err != nil {
		_ = tmp.Close()
		return err
	}
	if err = tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}

// errNotCached says a reference has no cached copy.
var errNotCached = errors.New("not cached")
