package hook

import (
	"bufio"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	admissionv1 "k8s.io/api/admission/v1"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apiserver/pkg/admission"
	"k8s.io/apiserver/pkg/authentication/user"
	core "k8s.io/kubernetes/pkg/apis/core"
)

// TestDecisionLogKeepsTheLatest: the ring keeps the latest decisions in order, numbered; a
// follower gets the ones after it started.
func TestDecisionLogKeepsTheLatest(t *testing.T) {
	l := NewDecisionLog(3)
	for _, m := range []string{"a", "b", "c", "d", "e"} {
		l.Record(Decision{Module: m})
	}
	var got []string
	for _, d := range l.Latest() {
		got = append(got, d.Module+":"+string(rune('0'+d.Seq)))
	}
	if strings.Join(got, " ") != "c:3 d:4 e:5" {
		t.Errorf("kept %v", got)
	}
	kept, next, stop := l.Follow()
	defer stop()
	if len(kept) != 3 {
		t.Errorf("follow starts with %d kept decisions, want 3", len(kept))
	}
	l.Record(Decision{Module: "f"})
	if d := <-next; d.Module != "f" || d.Seq != 6 {
		t.Errorf("followed %+v", d)
	}
	var nilLog *DecisionLog
	nilLog.Record(Decision{Module: "x"}) // records nothing, no panic
}

// TestDecisionLogServes: JSON lines, the module filter, and follow=true streaming a decision
// made after the request began; only GET.
func TestDecisionLogServes(t *testing.T) {
	l := NewDecisionLog(10)
	l.Record(Decision{Module: "a", Result: ResultAllowed})
	l.Record(Decision{Module: "b", Result: ResultDenied})
	srv := httptest.NewServer(l)
	defer srv.Close()

	resp, err := http.Get(srv.URL + DecisionsPath + "?module=b")
	if err != nil {
		t.Fatal(err)
	}
	var got []Decision
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		var d Decision
		if err := json.Unmarshal(sc.Bytes(), &d); err != nil {
			t.Fatal(err)
		}
		got = append(got, d)
	}
	resp.Body.Close()
	if len(got) != 1 || got[0].Module != "b" || got[0].Result != ResultDenied || resp.Header.Get("Content-Type") != "application/x-ndjson" {
		t.Errorf("module=b: %+v (%s)", got, resp.Header.Get("Content-Type"))
	}

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, srv.URL+DecisionsPath+"?follow=true&module=c", nil)
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if !IsFollow(req) {
		t.Error("IsFollow: false for follow=true")
	}
	go func() {
		time.Sleep(50 * time.Millisecond)
		l.Record(Decision{Module: "a"})
		l.Record(Decision{Module: "c", Message: "later"})
	}()
	sc = bufio.NewScanner(resp.Body)
	if !sc.Scan() || !strings.Contains(sc.Text(), `"later"`) {
		t.Errorf("follow: %q %v", sc.Text(), sc.Err())
	}

	post, err := http.Post(srv.URL+DecisionsPath, "text/plain", nil)
	if err != nil {
		t.Fatal(err)
	}
	post.Body.Close()
	if post.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("POST: %d", post.StatusCode)
	}
}

// TestAdmissionDecisionsRedactSecrets: the plugin records its modules' decisions; a denial that
// quotes a Secret's value (as it is or base64-encoded) is recorded with the value redacted, and
// when a value is too short to redact, without its message.
func TestAdmissionDecisionsRedactSecrets(t *testing.T) {
	quote := &fakeAdmitter{name: "quote", answer: func(review *admissionv1.AdmissionReview) (*admissionv1.AdmissionResponse, error) {
		var s struct{ Data map[string]string }
		if err := json.Unmarshal(review.Request.Object.Raw, &s); err != nil {
			return nil, err
		}
		raw, _ := base64.StdEncoding.DecodeString(s.Data["password"])
		return &admissionv1.AdmissionResponse{UID: review.Request.UID, Result: &metav1.Status{
			Message: "password " + string(raw) + " (base64 " + s.Data["password"] + ") is weak"}}, nil
	}}
	rules := []admissionregistrationv1.RuleWithOperations{{
		Operations: []admissionregistrationv1.OperationType{admissionregistrationv1.Create},
		Rule:       admissionregistrationv1.Rule{APIGroups: []string{""}, APIVersions: []string{"v1"}, Resources: []string{"secrets"}},
	}}
	log := NewDecisionLog(10)
	a, err := NewLiveAdmission(NewLive(Generation{Admission: []AdmissionModule{{Admitter: quote, Rules: rules}}}, nil, log), nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	completePlugin(t, a, nil, nil)
	secret := func(value string) admission.Attributes {
		obj := &core.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: "a", Name: "s"}, Data: map[string][]byte{"password": []byte(value)}}
		return admission.NewAttributesRecord(obj, nil, schema.GroupVersionKind{Version: "v1", Kind: "Secret"}, "a", "s",
			schema.GroupVersionResource{Version: "v1", Resource: "secrets"}, "", admission.Create, &metav1.CreateOptions{}, false,
			&user.DefaultInfo{Name: "alice"})
	}
	if err := a.Validate(context.Background(), secret("hunter22"), pluginObjects); err == nil || !strings.Contains(err.Error(), "hunter22") {
		t.Fatalf("the client gets the module's message as it is: %v", err)
	}
	if err := a.Validate(context.Background(), secret("x"), pluginObjects); err == nil {
		t.Fatal("the module's denial")
	}
	got := log.Latest()
	if len(got) != 2 {
		t.Fatalf("recorded %+v", got)
	}
	d := got[0]
	want := "password [redacted] (base64 [redacted]) is weak"
	if d.Module != "quote" || d.Result != ResultDenied || d.Operation != "CREATE" || d.Resource != "v1/secrets" ||
		d.Namespace != "a" || d.Name != "s" || d.User != "alice" || !strings.Contains(d.Message, want) {
		t.Errorf("recorded %+v, want a denial with the message %q", d, want)
	}
	if strings.Contains(got[1].Message, "x ") || !strings.Contains(got[1].Message, "withheld") {
		t.Errorf("a one-character value: %q, want the message withheld", got[1].Message)
	}
}

// TestRedactValues: a value is redacted as it is, base64-encoded, JSON-escaped and Go-quoted.
func TestRedactValues(t *testing.T) {
	key := "-----BEGIN KEY-----\nabc<def>\"x\"\n-----END KEY-----"
	q, _ := json.Marshal(key)
	msg := "raw " + key + " b64 " + base64.StdEncoding.EncodeToString([]byte(key)) + " json " + string(q) + " go " + fmt.Sprintf("%q", key)
	got, withheld := redactValues(msg, map[string][]byte{"tls.key": []byte(key)}, nil)
	if withheld || strings.Contains(got, "abc") || strings.Contains(got, "BEGIN") || strings.Count(got, "[redacted]") != 4 {
		t.Errorf("redacted: %q (withheld %v)", got, withheld)
	}
}

// TestAdmissionDecisionsBounded: a module's long message is recorded cut to maxDecisionMessage.
func TestAdmissionDecisionsBounded(t *testing.T) {
	long := &fakeAdmitter{name: "long", res: &admissionv1.AdmissionResponse{Result: &metav1.Status{Message: strings.Repeat("x", 10000)}}}
	log := NewDecisionLog(10)
	a, err := NewLiveAdmission(NewLive(Generation{Admission: []AdmissionModule{{Admitter: long, Rules: allOps}}}, nil, log), nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	completePlugin(t, a, nil, nil)
	if err := a.Validate(context.Background(), createCM("a", "x", nil, nil).attributes(), pluginObjects); err == nil {
		t.Fatal("the module's denial")
	}
	got := log.Latest()
	if len(got) != 1 || len(got[0].Message) > maxDecisionMessage+len("…") || got[0].Result != ResultDenied {
		t.Errorf("recorded %d decisions, message of %d bytes", len(got), len(got[0].Message))
	}
}
