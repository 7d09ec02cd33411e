// Command safe-annotations is a Kubewarden waPC policy in standard Go: objects must carry the
// mandatory annotations and none of the forbidden ones, and get a warning for each recommended
// one they lack (settings). validate_settings refuses an annotation that is both mandatory and
// forbidden. Built with -buildmode=c-shared and annotated with metadata.yml.
package main

import (
	"errors"
	"slices"
	"strconv"
	"strings"

	"github.com/wasmkube/wasmkube/wasm/guest"
	"github.com/wasmkube/wasmkube/wasm/guest/kubewarden"
	"github.com/wasmkube/wasmkube/wasm/guest/kubewarden/wapc"
	"github.com/wasmkube/wasmkube/wasm/guest/review"
)

func main() {}

type settings struct {
	mandatory, forbidden, recommended []string
}

func init() {
	wapc.Register(kubewarden.Policy[settings]{
		Settings: func(raw guest.JSON) (settings, error) {
			return settings{
				mandatory:   raw.Get("mandatory_annotations").Strings(),
				forbidden:   raw.Get("forbidden_annotations").Strings(),
				recommended: raw.Get("recommended_annotations").Strings(),
			}, nil
		},
		ValidateSettings: func(s settings) error {
			for _, a := range s.mandatory {
				if slices.Contains(s.forbidden, a) {
					return errors.New("annotation " + a + " is both mandatory and forbidden")
				}
			}
			return nil
		},
		Validate: validate,
	})
}

func validate(r *review.Request, s settings) kubewarden.Response {
	annotations := r.Object.Get("metadata", "annotations").StringMap()
	var missing, forbidden []string
	for _, a := range s.mandatory {
		if _, ok := annotations[a]; !ok {
			missing = append(missing, a)
		}
	}
	for _, a := range s.forbidden {
		if _, ok := annotations[a]; ok {
			forbidden = append(forbidden, a)
		}
	}
	var problems []string
	if len(missing) > 0 {
		problems = append(problems, "missing mandatory annotations: "+strings.Join(missing, ", "))
	}
	if len(forbidden) > 0 {
		problems = append(problems, "forbidden annotations: "+strings.Join(forbidden, ", "))
	}
	if len(problems) > 0 {
		return kubewarden.Reject(r.Kind.Kind+" "+r.Name+": "+strings.Join(problems, "; "), 0)
	}
	res := kubewarden.Accept().WithAuditAnnotation("checked", strconv.Itoa(len(annotations)))
	for _, a := range s.recommended {
		if _, ok := annotations[a]; !ok {
			res = res.WithWarnings(r.Kind.Kind + " " + r.Name + " has no " + a + " annotation; consider adding one")
		}
	}
	return res
}
