// Command default-labels is a mutating Kubewarden waPC policy: it adds the labels of its
// settings that an object lacks, answering with mutated_object (the whole edited object); the
// host turns that into a JSON patch.
package main

import (
	"errors"

	"github.com/wasmkube/wasmkube/wasm/guest"
	"github.com/wasmkube/wasmkube/wasm/guest/kubewarden"
	"github.com/wasmkube/wasmkube/wasm/guest/kubewarden/wapc"
	"github.com/wasmkube/wasmkube/wasm/guest/review"
)

func main() {}

func init() {
	wapc.Register(kubewarden.Policy[map[string]string]{
		Settings: func(raw guest.JSON) (map[string]string, error) { return raw.Get("labels").StringMap(), nil },
		ValidateSettings: func(labels map[string]string) error {
			if len(labels) == 0 {
				return errors.New("settings.labels names no label to add")
			}
			return nil
		},
		Validate: mutate,
	})
}

func mutate(r *review.Request, labels map[string]string) kubewarden.Response {
	have := r.Object.Get("metadata", "labels").StringMap()
	merged := map[string]string{}
	for k, v := range have {
		merged[k] = v
	}
	for k, v := range labels {
		if _, ok := merged[k]; !ok {
			merged[k] = v
		}
	}
	if len(merged) == len(have) {
		return kubewarden.Accept()
	}
	// The object again, with metadata.labels replaced: fields are copied as they are.
	var w guest.Writer
	w.ObjectStart()
	r.Object.Fields(func(key string, value guest.JSON) bool {
		w.Key(key)
		if key != "metadata" {
			w.Raw(value)
			return true
		}
		w.ObjectStart()
		value.Fields(func(k string, v guest.JSON) bool {
			if k != "labels" {
				w.Key(k).Raw(v)
			}
			return true
		})
		w.Key("labels").StringMap(merged).ObjectEnd()
		return true
	})
	return kubewarden.Mutate(w.ObjectEnd().Bytes())
}
