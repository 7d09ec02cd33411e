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
	for _, args := range [][]string{l.APIServer.ExtraArgs, l.Controllers.ExtraArgs, l.Scheduler.ExtraArgs} {
		for i, a := range args {
			name, value, ok := SplitArg(a)
			if !ok || !isPathFlag(name) || value == "" || value == "-" || filepath.IsAbs(value) {
				continue
			}
			args[i] = name + "=" + filepath.Join(filepath.Dir(l.Source), value)
		}
	}
}
