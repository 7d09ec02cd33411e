package source

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
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

// cachedRef returns the cached module ref named when last pulled.
func (f *Fetcher) cachedRef(ref string) (*pulled, []byte, error) {
	raw, err := os.ReadFile(f.refPath(ref))
	if err != nil {
		return nil, nil, errNotCached
	}
	var p pulled
	if err := json.Unmarshal(raw, &p); err != nil || p.Ref != ref {
		return nil, nil, errNotCached
	}
	b, err := f.readBlob(p.Digest)
	if err != nil {
		return nil, nil, err
	}
	return &p, b, nil
}

// fetchOCI pulls the module a registry reference names, or serves the cached copy: at once for
// a reference by digest, or when the registry does not answer for a tag.
func (f *Fetcher) fetchOCI(ctx context.Context, ref string) (*Module, error) {
	r, err := ParseOCI(ref)
	if err != nil {
		return nil, err
	}
	key := r.String()
	_, byDigest := r.(name.Digest)
	if p, b, err := f.cachedRef(key); err == nil && (byDigest || f.recentlyFetched(key, p.Digest)) {
		return &Module{Bytes: b, Digest: p.Digest, From: key + "@" + p.ManifestDigest, Cached: true}, nil
	}
	pullCtx := ctx
	if !byDigest {
		var cancel context.CancelFunc
		pullCtx, cancel = context.WithTimeout(ctx, f.cfg.TagTimeout)
		defer cancel()
	}
	m, manifestDigest, err := f.pull(pullCtx, r)
	if err != nil {
		var wrong *wrongArtifactError
		if errors.As(err, &wrong) || byDigest || ctx.Err() != nil {
			return nil, err
		}
		p, b, cacheErr := f.cachedRef(key)
		if cacheErr != nil {
			return nil, fmt.Errorf("%w (and it is not cached: pull it once online, e.g. wasmkube module pull %s)", err, ref)
		}
		f.cfg.Logger.Warn("the registry did not answer; the module pulled before serves", "ref", key, "pulled", p.Pulled, "digest", p.Digest, "err", err)
		return &Module{Bytes: b, Digest: p.Digest, From: key + "@" + p.ManifestDigest, Cached: true}, nil
	}
	if err := f.writeBlob(m.Digest, m.Bytes); err != nil {
		return nil, err
	}
	// Recorded under the reference and under the reference by digest it resolved to, so that a
	// profile pinning the manifest's digest later finds it offline.
	for _, k := range []string{key, r.Context().String() + "@" + manifestDigest} {
		rec, _ := json.Marshal(pulled{Ref: k, ManifestDigest: manifestDigest, Digest: m.Digest, Pulled: time.Now().UTC()})
		if err := writeFileAtomic(f.refPath(k), rec); err != nil {
			return nil, fmt.Errorf("cache the module: %w", err)
		}
	}
	f.remember(key, m.Digest)
	return m, nil
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

// pull pulls the module r names; it returns the module and the manifest's digest.
func (f *Fetcher) pull(ctx context.Context, r name.Reference) (*Module, string, error) {
	desc, err := remote.Get(r, f.remoteOptions(ctx)...)
	if err != nil {
		return nil, "", fmt.Errorf("pull %s: %w", r, err)
	}
	if desc.MediaType.IsIndex() {
		return nil, "", &wrongArtifactError{fmt.Sprintf("pull %s: it is an image index (%s), not a module: push the .wasm with wasmkube module push or kwctl push", r, desc.MediaType)}
	}
	img, err := desc.Image()
	if err != nil {
		return nil, "", fmt.Errorf("pull %s: %w", r, err)
	}
	layer, err := moduleLayer(r, img)
	if err != nil {
		return nil, "", err
	}
	rc, err := layer.Compressed()
	if err != nil {
		return nil, "", fmt.Errorf("pull %s: %w", r, err)
	}
	defer rc.Close()
	b, err := readLimited(rc)
	if err != nil {
		return nil, "", fmt.Errorf("pull %s: %w", r, err)
	}
	want, err := layer.Digest()
	if err != nil {
		return nil, "", fmt.Errorf("pull %s: %w", r, err)
	}
	if got := Digest(b); got != want.String() {
		return nil, "", fmt.Errorf("pull %s: the module layer's content has digest %s, the manifest says %s: it was not run", r, got, want)
	}
	return &Module{Bytes: b, Digest: want.String(), From: r.Context().String() + "@" + desc.Digest.String()}, desc.Digest.String(), nil
}

// moduleLayer returns the one layer of img that is a module.
func moduleLayer(r name.Reference, img v1.Image) (v1.Layer, error) {
	manifest, err := img.Manifest()
	if err != nil {
		return nil, fmt.Errorf("pull %s: %w", r, err)
	}
	var found []string
	for _, l := range manifest.Layers {
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
