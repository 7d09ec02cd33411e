package guest

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"
	"unicode/utf8"
)

// FuzzJSONReader checks the lazy reader against encoding/json on any input.
//
// The property, from JSON's contract:
//   - Valid agrees with json.Valid (within the reader's nesting limit of 1000).
//   - On a valid document every accessor agrees with what encoding/json reads: the type tests,
//     Exists, String (encoding/json's unescaping; bytes that are not UTF-8 are kept as sent, which
//     encoding/json replaces with U+FFFD, so strings are compared after that replacement), Bool,
//     Int (what json.Unmarshal into an int64 accepts, 0 otherwise), Fields and Elements (every
//     member in order, duplicates included, each value's exact bytes), Get (the first member of
//     that name), Index, Strings, StringMap and StringsMap (the last member of a name wins, as
//     for encoding/json's maps).
//   - On anything else no accessor panics.
func FuzzJSONReader(f *testing.F) {
	for _, s := range []string{
		`{"a": {"b": [1, "two", {"c": "d\"e\u00e9\ud83d\ude00"}], "t": true, "n": -42, "z": null}}`,
		`{"a":1,"a":"dup"}`, `["x", "y", 3]`, `"\ud800x"`, `1e5`, `-0.5E-3`, `01`, `1.`, `"\x"`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		j := JSON(b)
		valid := j.Valid()
		if want := json.Valid(b); valid != want && depth(b) <= 1000 {
			t.Fatalf("Valid() = %v, json.Valid = %v for %q", valid, want, b)
		}
		if !valid {
			exercise(j, 0) // no claims but that nothing panics
			return
		}
		checkValue(t, j, json.RawMessage(bytes.TrimSpace(b)), 0)
	})
}

// depth is the nesting depth of b's brackets outside strings (an upper bound for invalid input).
func depth(b []byte) int {
	d, max, inString := 0, 0, false
	for i := 0; i < len(b); i++ {
		switch c := b[i]; {
		case inString && c == '\\':
			i++
		case c == '"':
			inString = !inString
		case inString:
		case c == '{' || c == '[':
			d++
			max = maxInt(max, d)
		case c == '}' || c == ']':
			d--
		}
	}
	return max
}

func maxInt(a, b int) int {
	if a > b {
		return a
	}
	return b
}

// exercise calls every accessor on j and its parts.
func exercise(j JSON, level int) {
	_, _, _, _, _, _, _ = j.Exists(), j.IsObject(), j.IsArray(), j.IsString(), j.String(), j.Bool(), j.Int()
	_, _, _ = j.Strings(), j.StringMap(), j.StringsMap()
	_ = j.Index(1)
	if level > 20 {
		return
	}
	j.Fields(func(k string, v JSON) bool {
		_ = j.Get(k, k)
		exercise(v, level+1)
		return true
	})
	j.Elements(func(_ int, v JSON) bool {
		exercise(v, level+1)
		return true
	})
}

// member is an object member or array element as encoding/json reads it.
type member struct {
	key string
	raw json.RawMessage
}

// members reads raw's object members or array elements, in order, with encoding/json's decoder.
func members(t *testing.T, raw json.RawMessage) []member {
	t.Helper()
	dec := json.NewDecoder(bytes.NewReader(raw))
	if _, err := dec.Token(); err != nil {
		t.Fatalf("encoding/json: %v", err)
	}
	var out []member
	for dec.More() {
		var m member
		if raw[0] == '{' {
			tok, err := dec.Token()
			if err != nil {
				t.Fatalf("encoding/json key: %v", err)
			}
			m.key = tok.(string)
		}
		if err := dec.Decode(&m.raw); err != nil {
			t.Fatalf("encoding/json value: %v", err)
		}
		out = append(out, m)
	}
	return out
}

// asJSON is what encoding/json makes of a string the reader returned: bytes that are not UTF-8
// become U+FFFD, one per byte.
func asJSON(s string) string {
	if utf8.ValidString(s) {
		return s
	}
	var b strings.Builder
	for _, r := range s {
		b.WriteRune(r)
	}
	return b.String()
}

// stringOf is encoding/json's string value of raw, or "" when raw is not a string.
func stringOf(raw json.RawMessage) string {
	var s string
	if raw[0] != '"' || json.Unmarshal(raw, &s) != nil {
		return ""
	}
	return s
}

func checkValue(t *testing.T, j JSON, raw json.RawMessage, level int) {
	t.Helper()
	if !bytes.Equal(j.trim(), raw) {
		t.Fatalf("value %q, encoding/json reads %q", j, raw)
	}
	c := raw[0]
	if j.IsObject() != (c == '{') || j.IsArray() != (c == '[') || j.IsString() != (c == '"') || j.Exists() != (string(raw) != "null") {
		t.Fatalf("type of %q: object %v array %v string %v exists %v", raw, j.IsObject(), j.IsArray(), j.IsString(), j.Exists())
	}
	if got, want := asJSON(j.String()), stringOf(raw); got != want {
		t.Fatalf("String() of %q = %q, encoding/json %q", raw, got, want)
	}
	if j.Bool() != (string(raw) == "true") {
		t.Fatalf("Bool() of %q = %v", raw, j.Bool())
	}
	var n int64
	if err := json.Unmarshal(raw, &n); err != nil {
		n = 0
	}
	if j.Int() != n {
		t.Fatalf("Int() of %q = %d, encoding/json %d", raw, j.Int(), n)
	}
	switch c {
	case '{':
		checkObject(t, j, raw, level)
	case '[':
		checkArray(t, j, raw, level)
	default:
		if j.Index(0) != nil || j.Strings() != nil || j.StringMap() != nil || j.StringsMap() != nil {
			t.Fatalf("%q is no container, yet Index/Strings/StringMap/StringsMap found something", raw)
		}
		j.Fields(func(string, JSON) bool { t.Fatalf("Fields on %q", raw); return false })
		j.Elements(func(int, JSON) bool { t.Fatalf("Elements on %q", raw); return false })
	}
}

func checkObject(t *testing.T, j JSON, raw json.RawMessage, level int) {
	t.Helper()
	want := members(t, raw)
	var got []member
	j.Fields(func(k string, v JSON) bool {
		got = append(got, member{k, json.RawMessage(v)})
		return true
	})
	if len(got) != len(want) {
		t.Fatalf("Fields of %q: %d members, encoding/json %d", raw, len(got), len(want))
	}
	utf8Keys := true
	strs, strss := map[string]string{}, map[string][]string{}
	for i, m := range want {
		if asJSON(got[i].key) != m.key || !bytes.Equal(got[i].raw, m.raw) {
			t.Fatalf("member %d of %q: %q: %q, encoding/json %q: %q", i, raw, got[i].key, got[i].raw, m.key, m.raw)
		}
		utf8Keys = utf8Keys && utf8.ValidString(got[i].key)
		first := slices.IndexFunc(got, func(g member) bool { return g.key == got[i].key })
		if v := j.Get(got[i].key); !bytes.Equal(v, got[first].raw) {
			t.Fatalf("Get(%q) of %q = %q, want the first member %q", got[i].key, raw, v, got[first].raw)
		}
		strs[m.key] = stringOf(m.raw)
		strss[m.key] = stringsOf(t, m.raw)
		checkValue(t, JSON(got[i].raw), m.raw, level+1)
	}
	if v := j.Get("\x00absent"); v != nil && !slices.ContainsFunc(got, func(g member) bool { return g.key == "\x00absent" }) {
		t.Fatalf("Get of an absent key found %q", v)
	}
	checkPick(t, j, raw, got)
	if j.Index(0) != nil || j.Strings() != nil {
		t.Fatalf("Index/Strings of object %q found something", raw)
	}
	if !utf8Keys {
		return // keys that are not UTF-8 may collide once encoding/json replaces their bytes
	}
	if m := j.StringMap(); len(m) != len(strs) {
		t.Fatalf("StringMap of %q = %q, want %q", raw, m, strs)
	} else {
		for k, v := range m {
			if asJSON(v) != strs[k] {
				t.Fatalf("StringMap of %q = %q, want %q", raw, m, strs)
			}
		}
	}
	if m := j.StringsMap(); len(m) != len(strss) {
		t.Fatalf("StringsMap of %q = %q, want %q", raw, m, strss)
	} else {
		for k, v := range m {
			if !slices.Equal(mapStrings(v, asJSON), strss[k]) {
				t.Fatalf("StringsMap of %q = %q, want %q", raw, m, strss)
			}
		}
	}
}

// checkPick: Pick finds what Get finds, for every key of the object (backwards, so the keys
// are not in the object's order) and an absent one.
func checkPick(t *testing.T, j JSON, raw json.RawMessage, got []member) {
	t.Helper()
	keys := []string{"\x00absent"}
	for i := len(got) - 1; i >= 0; i-- {
		keys = append(keys, got[i].key)
	}
	values := make([]JSON, len(keys))
	values[0] = JSON("stale")
	j.Pick(keys, values)
	for i, k := range keys {
		if want := j.Get(k); !bytes.Equal(values[i], want) || (values[i] == nil) != (want == nil) {
			t.Fatalf("Pick of %q: %q = %q, Get %q", raw, k, values[i], want)
		}
	}
}

func checkArray(t *testing.T, j JSON, raw json.RawMessage, level int) {
	t.Helper()
	want := members(t, raw)
	var got []JSON
	j.Elements(func(i int, v JSON) bool {
		if i != len(got) {
			t.Fatalf("Elements of %q: index %d after %d elements", raw, i, len(got))
		}
		got = append(got, v)
		return true
	})
	if len(got) != len(want) {
		t.Fatalf("Elements of %q: %d, encoding/json %d", raw, len(got), len(want))
	}
	for i, m := range want {
		if !bytes.Equal(got[i], m.raw) || !bytes.Equal(j.Index(i), m.raw) {
			t.Fatalf("element %d of %q: %q (Index %q), encoding/json %q", i, raw, got[i], j.Index(i), m.raw)
		}
		checkValue(t, got[i], m.raw, level+1)
	}
	if j.Index(len(want)) != nil || j.Index(-1) != nil {
		t.Fatalf("Index out of range of %q found something", raw)
	}
	if got, want := mapStrings(j.Strings(), asJSON), stringsOf(t, raw); !slices.Equal(got, want) {
		t.Fatalf("Strings of %q = %q, want %q", raw, got, want)
	}
	if j.StringMap() != nil || j.StringsMap() != nil {
		t.Fatalf("StringMap/StringsMap of array %q found something", raw)
	}
	j.Fields(func(string, JSON) bool { t.Fatalf("Fields on array %q", raw); return false })
}

// stringsOf is what Strings promises for raw: each element's string value ("" for others); nil
// for anything but a non-empty array.
func stringsOf(t *testing.T, raw json.RawMessage) []string {
	if raw[0] != '[' {
		return nil
	}
	var out []string
	for _, m := range members(t, raw) {
		out = append(out, stringOf(m.raw))
	}
	return out
}

func mapStrings(ss []string, f func(string) string) []string {
	if ss == nil {
		return nil
	}
	out := make([]string, len(ss))
	for i, s := range ss {
		out[i] = f(s)
	}
	return out
}

// FuzzWriter drives the Writer with a program read from the input and checks that what it
// writes is valid JSON that encoding/json decodes to the value the program meant (strings as
// encoding/json would have written them: bytes that are not UTF-8 become U+FFFD), and that the
// reader finds it valid (within its nesting limit).
//
// Program bytes (mod 11): 0 open object, 1 open array, 2 close, 3 string, 4 int, 5 bool, 6 raw
// (a piece of text that is valid JSON, else nothing), 7 base64, 8 string list, 9 string map,
// 10 string-list map. Strings and keys are the pieces of text between '|', taken in turn.
func FuzzWriter(f *testing.F) {
	f.Add([]byte{0, 3, 4, 5, 1, 3, 3, 2, 9, 10, 2}, "a|b\"c|ü\\|\x01|\xff|\u2028<>&|\b\f", int64(-7))
	f.Add([]byte{1, 0, 2, 0, 3, 2, 6, 7, 8, 2}, "k|v|[1,{\"x\":null}]|bytes", int64(1<<62))
	f.Fuzz(func(t *testing.T, program []byte, text string, n int64) {
		pool := strings.Split(text, "|")
		next := 0
		str := func() string { s := pool[next%len(pool)]; next++; return s }
		var w Writer
		var stack []any // open containers: map[string]any or *array
		var root any
		done := false
		emit := func(v any) { // writes the key when inside an object; the caller writes v
			if len(stack) == 0 {
				root, done = v, true
				return
			}
			switch top := stack[len(stack)-1].(type) {
			case map[string]any:
				k := str()
				w.Key(k)
				top[asJSON(k)] = v
			case *array:
				top.elems = append(top.elems, v)
			}
		}
		closeTop := func() {
			if _, ok := stack[len(stack)-1].(map[string]any); ok {
				w.ObjectEnd()
			} else {
				w.ArrayEnd()
			}
			stack = stack[:len(stack)-1]
		}
		for _, op := range program {
			if done && len(stack) == 0 {
				break // one document
			}
			switch op % 11 {
			case 0:
				m := map[string]any{}
				emit(m)
				w.ObjectStart()
				stack = append(stack, m)
			case 1:
				a := &array{}
				emit(a)
				w.ArrayStart()
				stack = append(stack, a)
			case 2:
				if len(stack) > 0 {
					closeTop()
				}
			case 3:
				s := str()
				emit(asJSON(s))
				w.String(s)
			case 4:
				emit(json.Number(strconv.FormatInt(n, 10)))
				w.Int(n)
			case 5:
				emit(n%2 == 0)
				w.Bool(n%2 == 0)
			case 6:
				s := str()
				v, err := decode([]byte(s))
				if err != nil {
					s, v = "", nil // Raw writes null for nothing
				}
				emit(v)
				w.Raw([]byte(s))
			case 7:
				s := str()
				emit(base64.StdEncoding.EncodeToString([]byte(s)))
				w.Base64([]byte(s))
			case 8:
				ss := []string{str(), str()}
				emit(&array{elems: []any{asJSON(ss[0]), asJSON(ss[1])}})
				w.Strings(ss)
			case 9:
				k, v := str(), str()
				emit(map[string]any{asJSON(k): asJSON(v)})
				w.StringMap(map[string]string{k: v})
			case 10:
				k, v := str(), str()
				emit(map[string]any{asJSON(k): &array{elems: []any{asJSON(v)}}})
				w.StringsMap(map[string][]string{k: {v}})
			}
		}
		for len(stack) > 0 { // close what the program left open
			closeTop()
		}
		if !done {
			return
		}
		out := w.Bytes()
		got, err := decode(out)
		if err != nil {
			t.Fatalf("the writer wrote invalid JSON %q: %v", out, err)
		}
		if want := settle(root); !reflect.DeepEqual(got, want) {
			t.Fatalf("the writer wrote %q, which decodes to %#v, want %#v", out, got, want)
		}
		if !JSON(out).Valid() && depth(out) <= 1000 {
			t.Fatalf("the reader finds the writer's %q invalid", out)
		}
	})
}

// array is an array being built (its elements grow after it is placed in its parent).
type array struct{ elems []any }

// settle turns the arrays being built into []any, as encoding/json decodes them.
func settle(v any) any {
	switch t := v.(type) {
	case *array:
		out := make([]any, len(t.elems))
		for i, e := range t.elems {
			out[i] = settle(e)
		}
		return out
	case map[string]any:
		out := make(map[string]any, len(t))
		for k, e := range t {
			out[k] = settle(e)
		}
		return out
	}
	return v
}

// decode reads exactly one JSON document, numbers as json.Number.
func decode(b []byte) (any, error) {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, err
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, errors.New("more than one document")
	}
	return v, nil
}

// BenchmarkValid measures Valid on an envelope as the host sends it (an AdmissionReview of a
// Pod with 40 containers, 6.5 KB), against json.Valid in the same run: the SDK
// checks every envelope with Valid before a handler sees it.
func BenchmarkValid(b *testing.B) {
	var containers []map[string]any
	for i := range 40 {
		containers = append(containers, map[string]any{
			"name": "c" + strconv.Itoa(i), "image": "registry.example/app:v1.2.3",
			"env":       []map[string]any{{"name": "A", "value": "x \"quoted\" \u00e9"}},
			"resources": map[string]any{"limits": map[string]any{"cpu": "500m", "memory": 1.5e9}},
		})
	}
	envelope, err := json.Marshal(map[string]any{
		"request": map[string]any{"uid": "705ab4f5-6393-11e8-b7cc-42010a800002", "operation": "CREATE",
			"object": map[string]any{"apiVersion": "v1", "kind": "Pod", "metadata": map[string]any{"name": "p", "labels": map[string]string{"app": "a"}},
				"spec": map[string]any{"containers": containers}}},
		"settings": map[string]any{"limit": 3, "names": []string{"a", "b"}},
	})
	if err != nil {
		b.Fatal(err)
	}
	b.Run("guest.Valid", func(b *testing.B) {
		b.SetBytes(int64(len(envelope)))
		for b.Loop() {
			if !JSON(envelope).Valid() {
				b.Fatal("invalid")
			}
		}
	})
	b.Run("json.Valid", func(b *testing.B) {
		b.SetBytes(int64(len(envelope)))
		for b.Loop() {
			if !json.Valid(envelope) {
				b.Fatal("invalid")
			}
		}
	})
}
