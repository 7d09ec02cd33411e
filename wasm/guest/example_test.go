package guest_test

import (
	"fmt"

	"github.com/wasmkube/wasmkube/wasm/guest"
)

// A handler reads only what it needs from the raw request: Get follows a key path, and a missing
// key is a JSON that does not exist rather than an error.
func ExampleJSON() {
	pod := guest.JSON(`{"metadata":{"name":"web","labels":{"team":"a"}},
		"spec":{"priority":3,"containers":[{"name":"app","image":"ghcr.io/acme/web:1.2"}]}}`)
	fmt.Println(pod.Get("metadata", "name").String())
	fmt.Println(pod.Get("metadata", "labels", "team").String())
	fmt.Println(pod.Get("spec", "priority").Int())
	fmt.Println(pod.Get("spec", "containers").Index(0).Get("image").String())
	fmt.Println(pod.Get("metadata", "annotations").Exists())
	// Output:
	// web
	// a
	// 3
	// ghcr.io/acme/web:1.2
	// false
}

// Writer builds JSON without encoding/json; its calls chain.
func ExampleWriter() {
	var w guest.Writer
	w.ObjectStart().
		Key("name").String("web").
		Key("replicas").Int(2).
		Key("images").Strings([]string{"nginx:1.27", "busybox"}).
		ObjectEnd()
	fmt.Println(string(w.Bytes()))
	// Output: {"name":"web","replicas":2,"images":["nginx:1.27","busybox"]}
}
