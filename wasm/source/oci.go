package source

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
	"github.com/google/go-containerregistry/pkg/v1/static"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// ParseOCI parses a registry:// or oci:// reference (the scheme is optional) as the registry
// reference it names.
func ParseOCI(ref string) (name.Reference, error) {
	rest := strings.TrimPrefix(strings.TrimPrefix(ref, SchemeRegistry), SchemeOCI)
	r, err := name.ParseReference(rest)
	if err != nil {
		return nil, fmt.Errorf("%s: not a registry reference (registry://HOST/REPO:TAG or registry://HOST/REPO@sha256:…): %w", ref, err)
	}
	return r, nil
}

// pulled is what the cache keeps of a reference: the module it named when last pulled.
type pulled struct {
	Ref            string    `json:"ref"`
	ManifestDigest string    `json:"manifestDigest"`
	Digest         string    `json:"digest"`
	Pulled         time.Time `json:"pulled"`
}

// refPath is where the cache records what ref named.
func (f *Fetcher) refPath(ref string) string {
	sum := sha256.Sum256([]byte(ref))
	return filepath.Join(f.cfg.CacheDir, "refs", hex.EncodeToString(sum[:])+".json")
}

// cachedRef returns the cached module ref named when last pulled. The record is checked, not
// trusted: the cached manifest must have the digest the record (and a reference by digest)
// names, and name the module's digest as its one module layer.
func (f *Fetcher) cachedRef(r name.Reference) (*pulled, []byte, error) {
	key := r.String()
	raw, err := os.ReadFile(f.refPath(key))
	if err != nil {
		return nil, nil, errNotCached
	}
	var p pulled
	if err := json.Unmarshal(raw, &p); err != nil || p.Ref != key {
		return nil, nil, errNotCached
	}
	if d, ok := r.(name.Digest); ok && d.DigestStr() != p.ManifestDigest {
		return nil, nil, errNotCached
	}
	manifest, err := f.readBlob(p.ManifestDigest)
	if err != nil {
		return nil, nil, errNotCached
	}
	m, err := v1.ParseManifest(bytes.NewReader(manifest))
	if err != nil || len(m.Layers) != 1 || m.Layers[0].MediaType != WasmLayerMediaType || m.Layers[0].Digest.String() != p.Digest {
		return nil, nil, fmt.Errorf("the cache's record of %s does not match its manifest: it is pulled again", key)
	}
	b, err := f.readBlob(p.Digest)
	if err != nil {
		return nil, nil, err
	}
	return &p, b, nil
}

// fetchOCI pulls the module a registry reference names, or serves the cached copy: at once for
// a reference by digest, or when the registry cannot be reached for a tag (not when it answers
// that the tag or the credentials are wrong).
func (f *Fetcher) fetchOCI(ctx context.Context, ref string) (*Module, error) {
	r, err := ParseOCI(ref)
	if err != nil {
		return nil, err
	}
	key := r.String()
	_, byDigest := r.(name.Digest)
	if p, b, err := f.cachedRef(r); err == nil && (byDigest || f.recentlyFetched(key, p.Digest)) {
		return &Module{Bytes: b, Digest: p.Digest, From: key + "@" + p.ManifestDigest, Cached: true}, nil
	}
	m, manifest, err := f.pull(ctx, r)
	if err != nil {
		if byDigest || ctx.Err() != nil || !unreachable(err) {
			return nil, err
		}
		p, b, cacheErr := f.cachedRef(r)
		if cacheErr != nil {
			return nil, fmt.Errorf("%w (and it is not cached: pull it once online, e.g. wasmkube module pull %s)", err, ref)
		}
		f.cfg.Logger.Warn("the registry did not answer; the module pulled before serves", "ref", key, "pulled", p.Pulled, "digest", p.Digest, "err", err)
		return &Module{Bytes: b, Digest: p.Digest, From: key + "@" + p.ManifestDigest, Cached: true}, nil
	}
	if err := f.cachePull(r, m, manifest); err != nil {
		return nil, err
	}
	f.remember(key, m.Digest)
	return m, nil
}

// unreachable says a pull failed because the registry could not be reached or failed itself
// (network, timeout, 5xx), not because it answered no (4xx: no such tag, no access) or sent
// something that is not a module. A registry on this host or a private address is pinged over
// https and http at once; when https times out or cannot connect, the http answer (often 400,
// "HTTP request to an HTTPS server") does not make the registry reachable.
func unreachable(err error) bool {
	var wrong *wrongArtifactError
	if errors.As(err, &wrong) {
		return false
	}
	var opErr *net.OpError
	if errors.Is(err, context.DeadlineExceeded) || errors.As(err, &opErr) {
		return true
	}
	var te *transport.Error
	return !errors.As(err, &te) || te.StatusCode >= 500
}

// cachePull caches a pulled module, its manifest, and what the reference (and the reference by
// the manifest's digest it resolved to) named.
func (f *Fetcher) cachePull(r name.Reference, m *Module, manifest []byte) error {
	manifestDigest := Digest(manifest)
	for d, b := range map[string][]byte{m.Digest: m.Bytes, manifestDigest: manifest} {
		if err := f.writeBlob(d, b); err != nil {
			return err
		}
	}
	for _, k := range []string{r.String(), r.Context().String() + "@" + manifestDigest} {
		rec, _ := json.Marshal(pulled{Ref: k, ManifestDigest: manifestDigest, Digest: m.Digest, Pulled: time.Now().UTC()})
		if err := writeFileAtomic(f.refPath(k), rec); err != nil {
			return fmt.Errorf("cache the module: %w", err)
		}
	}
	return nil
}

// recentlyFetched says this Fetcher pulled ref moments ago and got digest.
func (f *Fetcher) recentlyFetched(ref, digest string) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	r, ok := f.recent[ref]
	return ok && r.digest == digest && time.Since(r.at) < fetchedRecently
}

func (f *Fetcher) remember(ref, digest string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.recent[ref] = recentFetch{digest: digest, at: time.Now()}
}

// wrongArtifactError says a reference names something that is not a module: never retried
// from the cache.
type wrongArtifactError struct{ msg string }

func (e *wrongArtifactError) Error() string { return e.msg }

// remoteOptions are the options of every registry call: the context, the transport, and the
// credentials of ~/.docker/config.json (or $DOCKER_CONFIG).
func (f *Fetcher) remoteOptions(ctx context.Context) []remote.Option {
	return []remote.Option{remote.WithContext(ctx), remote.WithTransport(f.cfg.Transport), remote.WithAuthFromKeychain(authn.DefaultKeychain)}
}

// blobTimeout bounds downloading a module's layer.
const blobTimeout = 2 * time.Minute

// pull pulls the module r names: the manifest within TagTimeout, the module within blobTimeout.
// It returns the module and the raw manifest.
func (f *Fetcher) pull(ctx context.Context, r name.Reference) (*Module, []byte, error) {
	mctx, cancel := context.WithTimeout(ctx, f.cfg.TagTimeout)
	defer cancel()
	desc, err := remote.Get(r, f.remoteOptions(mctx)...)
	if err != nil {
		return nil, nil, fmt.Errorf("pull %s: %w", r, err)
	}
	if desc.MediaType.IsIndex() {
		return nil, nil, &wrongArtifactError{fmt.Sprintf("pull %s: it is an image index (%s), not a module: push the .wasm with wasmkube module push or kwctl push", r, desc.MediaType)}
	}
	bctx, cancel := context.WithTimeout(ctx, blobTimeout)
	defer cancel()
	img, err := remote.Image(r.Context().Digest(desc.Digest.String()), f.remoteOptions(bctx)...)
	if err != nil {
		return nil, nil, fmt.Errorf("pull %s: %w", r, err)
	}
	layer, err := moduleLayer(r, img)
	if err != nil {
		return nil, nil, err
	}
	b, err := f.readLayer(r, layer)
	if err != nil {
		return nil, nil, err
	}
	return &Module{Bytes: b, Digest: Digest(b), From: r.Context().String() + "@" + desc.Digest.String()}, desc.Manifest, nil
}

// readLayer reads a module layer, bounded by the size limit and checked against its digest.
func (f *Fetcher) readLayer(r name.Reference, layer v1.Layer) ([]byte, error) {
	if size, err := layer.Size(); err == nil && size > f.cfg.MaxModuleSize {
		return nil, fmt.Errorf("pull %s: the module layer is %d bytes, more than the limit of %d", r, size, f.cfg.MaxModuleSize)
	}
	rc, err := layer.Compressed()
	if err != nil {
		return nil, fmt.Errorf("pull %s: %w", r, err)
	}
	defer rc.Close()
	b, err := f.readLimited(rc)
	if err != nil {
		return nil, fmt.Errorf("pull %s: %w", r, err)
	}
	want, err := layer.Digest()
	if err != nil {
		return nil, fmt.Errorf("pull %s: %w", r, err)
	}
	if got := Digest(b); got != want.String() {
		return nil, fmt.Errorf("pull %s: the module layer's content has digest %s, the manifest says %s: it was not run", r, got, want)
	}
	return b, nil
}

// moduleLayer returns the one layer of img that is a module.
func moduleLayer(r name.Reference, img v1.Image) (v1.Layer, error) {
	manifest, err := img.Manifest()
	if err != nil {
		return nil, fmt.Errorf("pull %s: %w", r, err)
	}
	var found []string
	for i, l := range manifest.Layers {
		if i == 5 { // a hostile manifest may list thousands
			found = append(found, fmt.Sprintf("… %d layers in all", len(manifest.Layers)))
			break
		}
		found = append(found, string(l.MediaType))
	}
	if len(manifest.Layers) != 1 || manifest.Layers[0].MediaType != WasmLayerMediaType {
		return nil, &wrongArtifactError{fmt.Sprintf("pull %s: it is not a module: its layers have media types [%s], want one layer of %s (push the .wasm with wasmkube module push or kwctl push)",
			r, strings.Join(found, ", "), WasmLayerMediaType)}
	}
	return img.LayerByDigest(manifest.Layers[0].Digest)
}

// Push pushes module to ref (registry://… or oci://…) as the artifact Kubewarden pushes: an OCI
// manifest with a config of WasmConfigMediaType, the module as its one layer of
// WasmLayerMediaType, and annotations on the manifest. It returns the reference by digest.
func (f *Fetcher) Push(ctx context.Context, ref string, module []byte, annotations map[string]string) (string, error) {
	r, err := ParseOCI(ref)
	if err != nil {
		return "", err
	}
	img, err := Artifact(module, annotations)
	if err != nil {
		return "", err
	}
	if err := remote.Write(r, img, f.remoteOptions(ctx)...); err != nil {
		return "", fmt.Errorf("push %s: %w", r, err)
	}
	d, err := img.Digest()
	if err != nil {
		return "", err
	}
	return r.Context().String() + "@" + d.String(), nil
}

// Artifact is module as an OCI artifact (see Push).
func Artifact(module []byte, annotations map[string]string) (v1.Image, error) {
	img, err := mutate.ConfigFile(empty.Image, &v1.ConfigFile{Architecture: "wasm", OS: "wasip1"})
	if err != nil {
		return nil, err
	}
	img = mutate.MediaType(img, types.OCIManifestSchema1)
	img = mutate.ConfigMediaType(img, WasmConfigMediaType)
	img, err = mutate.Append(img, mutate.Addendum{Layer: static.NewLayer(module, WasmLayerMediaType)})
	if err != nil {
		return nil, err
	}
	if len(annotations) > 0 {
		img = mutate.Annotations(img, annotations).(v1.Image)
	}
	return img, nil
}
