package profiles

import (
	"path/filepath"
	"slices"
	"strings"
)

// pathFlagSuffixes end the names of the Kubernetes components' flags whose value is a file or
// directory (--audit-policy-file, --audit-log-path, --cert-dir, --client-ca-file,
// --etcd-cafile, …). There is no list of them in the components' option packages to ask, and
// the names follow this convention throughout.
var pathFlagSuffixes = []string{"-file", "-path", "-dir", "-cafile", "-certfile", "-keyfile", "kubeconfig"}

// pathFlags are the path flags of kube-apiserver, kube-controller-manager and kube-scheduler
// whose names do not follow that convention.
var pathFlags = []string{
	"encryption-provider-config", "authentication-config", "authorization-config", "egress-selector-config-file",
	"kubelet-certificate-authority", "kubelet-client-certificate", "kubelet-client-key", "cloud-config",
	"pv-recycler-pod-template-filepath-nfs", "pv-recycler-pod-template-filepath-hostpath",
	"config", "write-config-to",
}

// isPathFlag reports whether the component flag name takes a file or directory path.
func isPathFlag(name string) bool {
	if slices.Contains(pathFlags, name) {
		return true
	}
	for _, s := range pathFlagSuffixes {
		if strings.HasSuffix(name, s) {
			return true
		}
	}
	return false
}

// resolveArgPaths makes the relative paths in a profile file's extraArgs relative to the file's
// directory, as module paths are, rather than to the directory `up` runs in. "-" (standard
// output, for --audit-log-path) stays.
func (l *Loaded) resolveArgPaths() {
	if l.IsBuiltin() {
		return
	}
	dir := filepath.Dir(l.Source)
	for _, args := range [][]string{l.APIServer.ExtraArgs, l.Controllers.ExtraArgs, l.Scheduler.ExtraArgs} {
		for i, a := range args {
			name, value, ok := SplitArg(a)
			switch {
			case !ok:
			case name == "tls-sni-cert-key":
				args[i] = name + "=" + resolveSNICertKey(dir, value)
			case isPathFlag(name):
				args[i] = name + "=" + resolvePath(dir, value)
			}
		}
	}
}

// resolvePath joins a relative path to dir; empty, "-" and absolute values stay.
func resolvePath(dir, value string) string {
	if value == "" || value == "-" || filepath.IsAbs(value) {
		return value
	}
	return filepath.Join(dir, value)
}

// resolveSNICertKey resolves the two files of a --tls-sni-cert-key value,
// "cert.pem,key.pem[:domain,domain…]", read as kube-apiserver reads it (cliflag.NamedCertKey:
// the paths end at the first colon); the domains stay.
func resolveSNICertKey(dir, value string) string {
	files, domains, hasDomains := strings.Cut(value, ":")
	cert, key, ok := strings.Cut(files, ",")
	if !ok {
		return value // kube-apiserver refuses it, naming the flag
	}
	resolved := resolvePath(dir, cert) + "," + resolvePath(dir, key)
	if hasDomains {
		resolved += ":" + domains
	}
	return resolved
}
