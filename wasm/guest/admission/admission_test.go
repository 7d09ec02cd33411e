package admission

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"strings"
	"testing"

	"github.com/wasmkube/wasmkube/wasm/guest"
)

func TestHandleRoundTrip(t *testing.T) {
	Handle(guest.NoSettings, func(r *Request, _ struct{}) Response {
		if r.Kind.Kind != "ConfigMap" || r.Operation != "CREATE" || r.UserInfo.Username != "alice" || r.Namespace != "ns" ||
			r.Object.Get("data", "k").String() != "v" || !r.DryRun || r.UserInfo.Groups[0] != "g" {
			return Reject("request decoded wrongly: "+string(r.Raw), 500)
		}
		return Patch(Operation{Op: "add", Path: "/data/x", Value: []byte(`"y"`)}).
			WithWarnings("careful").WithAuditAnnotation("checked", "yes")
	})
	in := `{"request":{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"u1",` +
		`"kind":{"group":"","version":"v1","kind":"ConfigMap"},"resource":{"group":"","version":"v1","resource":"configmaps"},` +
		`"namespace":"ns","operation":"CREATE","userInfo":{"username":"alice","groups":["g"]},"dryRun":true,` +
		`"object":{"data":{"k":"v"}}}}}`
	var out bytes.Buffer
	Run(strings.NewReader(in), &out)
	var env struct {
		Response struct {
			APIVersion, Kind string
			Response         struct {
				UID              string
				Allowed          bool
				Patch            []byte
				PatchType        string
				Warnings         []string
				AuditAnnotations map[string]string
				Status           *struct{ Message string }
			}
		}
		Error string
	}
	if err := json.Unmarshal(out.Bytes(), &env); err != nil {
		t.Fatalf("%v: %s", err, out.Bytes())
	}
	r := env.Response.Response
	if env.Error != "" || env.Response.Kind != "AdmissionReview" || r.UID != "u1" || !r.Allowed || r.PatchType != "JSONPatch" ||
		string(r.Patch) != `[{"op":"add","path":"/data/x","value":"y"}]` || r.Warnings[0] != "careful" || r.AuditAnnotations["checked"] != "yes" {
		t.Fatalf("got %s (status %+v)", out.Bytes(), r.Status)
	}
	full := Mutate([]byte(`{"a":1}`))
	w, _ := full.write("u2")
	if !strings.Contains(string(w.Bytes()), `"patch":"`+base64.StdEncoding.EncodeToString([]byte(`{"a":1}`))+`","patchType":"Full"`) {
		t.Errorf("full patch: %s", w.Bytes())
	}
}
