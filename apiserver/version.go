package apiserver

import (
	"runtime/debug"
	"strconv"
	_ "unsafe" // for go:linkname

	utilversion "k8s.io/apimachinery/pkg/util/version"
	"k8s.io/component-base/version"
)

// The Kubernetes version variables are unexported and meant to be set with -ldflags -X, which
// `go run` and `go install` users do not pass. Without them the server reports
// v0.0.0-master+$Format:%H$ and `kubectl version` fails, so they are set at start-up from the
// build's module information. component-base offers no setter: SetDynamicVersion only accepts
// the same major.minor.patch as the compiled-in value.

//go:linkname kubeGitVersion k8s.io/component-base/version.gitVersion
var kubeGitVersion string

//go:linkname kubeGitMajor k8s.io/component-base/version.gitMajor
var kubeGitMajor string

//go:linkname kubeGitMinor k8s.io/component-base/version.gitMinor
var kubeGitMinor string

//go:linkname kubeGitTreeState k8s.io/component-base/version.gitTreeState
var kubeGitTreeState string

// EmbeddedKubernetesVersion is the k8s.io/kubernetes version in go.mod (a test keeps them in
// step). It is used when the binary carries no module information, as in test binaries.
const EmbeddedKubernetesVersion = "v1.37.2"

// unstampedVersion is component-base's placeholder when no -ldflags set the version.
const unstampedVersion = "v0.0.0-master+$Format:%H$"

// StampKubernetesVersion makes the Kubernetes version variables report the k8s.io/kubernetes
// version this binary was built with, unless -ldflags already set them. It must run before the
// first kube-apiserver or kube-controller-manager options are created (they read the version
// once); calling it again does nothing.
func StampKubernetesVersion() {
	if kubeGitVersion != unstampedVersion {
		return
	}
	v := kubernetesModuleVersion()
	parsed, err := utilversion.ParseSemantic(v)
	if err != nil {
		return
	}
	kubeGitVersion = v
	kubeGitMajor = strconv.FormatUint(uint64(parsed.Major()), 10)
	kubeGitMinor = strconv.FormatUint(uint64(parsed.Minor()), 10)
	kubeGitTreeState = "clean"
	_ = version.SetDynamicVersion(v)
}

// KubernetesVersion is the version the embedded Kubernetes components report.
func KubernetesVersion() string {
	StampKubernetesVersion()
	return version.Get().GitVersion
}

func kubernetesModuleVersion() string {
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, d := range bi.Deps {
			if d.Path == "k8s.io/kubernetes" {
				if d.Replace != nil && d.Replace.Version != "" {
					return d.Replace.Version
				}
				return d.Version
			}
		}
	}
	return EmbeddedKubernetesVersion
}
