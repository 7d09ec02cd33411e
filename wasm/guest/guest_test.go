package guest

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
)

func TestWriterMatchesEncodingJSON(t *testing.T) {
	for _, s := range []string{"", "plain", `quo"te`, `back\slash`, "new\nline\ttab\r", "ctl\x01\x1f", "<html>&", "ünïcødé ✓", "bad\xffutf8", "\u2028"} {
		var w Writer
		w.String(s)
		want, _ := json.Marshal(s)
		var got, exp string
		if err := json.Unmarshal(w.Bytes(), &got); err != nil {
			t.Fatalf("%q: writer produced invalid JSON %s: %v", s, w.Bytes(), err)
		}
		_ = json.Unmarshal(want, &exp)
		if got != exp {
			t.Errorf("%q: round trip %q, encoding/json %q", s, got, exp)
		}
	}
	var w Writer
	w.ObjectStart().Key("a").Strings([]string{"x", "y"}).Key("b").Bool(true).Key("c").Int(-3).
		Key("d").Raw(nil).Key("e").Base64([]byte("hi")).Key("f").StringMap(map[string]string{"k": "v"}).
		Key("g").ArrayStart().ObjectStart().ObjectEnd().ObjectStart().Key("h").String("i").ObjectEnd().ArrayEnd().ObjectEnd()
	want := `{"a":["x","y"],"b":true,"c":-3,"d":null,"e":"aGk=","f":{"k":"v"},"g":[{},{"h":"i"}]}`
	if string(w.Bytes()) != want {
		t.Errorf("got  %s\nwant %s", w.Bytes(), want)
	}
}

func TestJSONReader(t *testing.T) {
	doc := JSON(` {"a": {"b": [1, "two", {"c": "d\"e\u00e9\ud83d\ude00"}], "t": true, "n": -42, "z": null},
		"s": ["x", "y"], "m": {"k": "v", "l": "w"}, "e": {"g": ["1", "2"]}} `)
	if !doc.Valid() || !doc.IsObject() {
		t.Fatal("valid document reported invalid")
	}
	if got := doc.Get("a", "b").Index(2).Get("c").String(); got != "d\"eé😀" {
		t.Errorf("unescaped string %q", got)
	}
	if doc.Get("a", "b").Index(1).String() != "two" || !doc.Get("a", "t").Bool() || doc.Get("a", "n").Int() != -42 {
		t.Error("scalar reads")
	}
	if doc.Get("a", "z").Exists() || doc.Get("nope").Exists() || doc.Get("a", "b", "c").Exists() {
		t.Error("null, missing and wrong-type paths must not exist")
	}
	if s := doc.Get("s").Strings(); len(s) != 2 || s[1] != "y" {
		t.Errorf("strings %v", s)
	}
	if m := doc.Get("m").StringMap(); m["l"] != "w" || len(m) != 2 {
		t.Errorf("string map %v", m)
	}
	if e := doc.Get("e").StringsMap(); len(e["g"]) != 2 {
		t.Errorf("strings map %v", e)
	}
	for _, bad := range []string{`{"a":`, `{"a":1}}`, `{"a" 1}`, `"unterminated`, `[1,2`, `tru`, ``} {
		if JSON(bad).Valid() {
			t.Errorf("%q reported valid", bad)
		}
	}
}

func envelope(request, settings string) *strings.Reader {
	s := `{"request":` + request
	if settings != "" {
		s += `,"settings":` + settings
	}
	return strings.NewReader(s + "}")
}

func TestServeSettingsPanicAndErrors(t *testing.T) {
	type settings struct{ N int64 }
	decodes := 0
	hk := Register(func(raw JSON) (settings, error) {
		decodes++
		return settings{N: raw.Get("n").Int()}, nil
	}, func(req JSON, s settings) (*Writer, error) {
		if req.Get("panic").Bool() {
			panic("boom")
		}
		w := &Writer{}
		return w.ObjectStart().Key("n").Int(s.N).Key("x").String(req.Get("x").String()).ObjectEnd(), nil
	})
	var out bytes.Buffer
	for i := 0; i < 3; i++ {
		out.Reset()
		hk.Run(envelope(`{"x":"y"}`, `{"n":7}`), &out)
		if out.String() != `{"response":{"n":7,"x":"y"}}` {
			t.Fatalf("got %s", out.String())
		}
	}
	if decodes != 1 {
		t.Errorf("settings decoded %d times for the same settings, want once", decodes)
	}
	out.Reset()
	hk.Run(envelope(`{"panic":true}`, ""), &out)
	if out.String() != `{"error":"panic: boom"}` {
		t.Errorf("panic: got %s", out.String())
	}
	out.Reset()
	hk.Run(strings.NewReader(`not json`), &out)
	if !strings.Contains(out.String(), `"error":"stdin is not a JSON envelope"`) {
		t.Errorf("garbage: got %s", out.String())
	}
	out.Reset()
	var none *Hook
	none.Run(envelope(`{}`, ""), &out)
	if !strings.Contains(out.String(), "registered no handler") {
		t.Errorf("no handler: got %s", out.String())
	}
}
