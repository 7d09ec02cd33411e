package guest

import (
	"strconv"
	"unicode/utf16"
	"unicode/utf8"
)

// JSON is a raw JSON value, read lazily: Get walks to a field without decoding the rest.
//
// # Notes
//
//   - Only Valid checks a document. The other methods assume a valid one (the SDK checks the
//     envelope with Valid before a handler sees any of it): on a valid document they read what
//     encoding/json reads; on anything else they return some value and never panic.
//   - Differences from encoding/json on valid documents: a string's bytes that are not UTF-8 are
//     returned as sent (encoding/json replaces them with U+FFFD); with a key given twice, Get
//     returns the first value (encoding/json keeps the last; StringMap and StringsMap keep the
//     last too); nesting deeper than 1000 is invalid (encoding/json allows 10000). The host
//     writes its JSON with encoding/json, so none of these arise in what a module is sent.
//   - FuzzJSONReader checks these promises against encoding/json.
//
// It is written here because every maintained Go JSON library imports encoding/json, fmt or
// reflect, which add ~1 MB to a module (measured: a module with the SDK is ~2.3 MB without
// them, ~3.3–3.6 MB with them) and dominate the time of a call.
type JSON []byte

// Get walks object keys in order and returns the value found, or nil. Of a key given twice,
// the first value is found.
func (j JSON) Get(keys ...string) JSON {
	v := j.trim()
	for _, k := range keys {
		v = v.field(k)
		if v == nil {
			return nil
		}
	}
	return v
}

// Index returns the i-th element of an array, or nil.
func (j JSON) Index(i int) JSON {
	var found JSON
	j.Elements(func(n int, v JSON) bool {
		if n == i {
			found = v
			return false
		}
		return true
	})
	return found
}

// Exists reports whether the value is present and not null.
func (j JSON) Exists() bool {
	v := j.trim()
	return len(v) > 0 && string(v) != "null"
}

// IsObject and IsArray report the value's type.
func (j JSON) IsObject() bool { v := j.trim(); return len(v) > 0 && v[0] == '{' }
func (j JSON) IsArray() bool  { v := j.trim(); return len(v) > 0 && v[0] == '[' }

// IsString reports whether the value is a string.
func (j JSON) IsString() bool { v := j.trim(); return len(v) > 0 && v[0] == '"' }

// String returns a string value unescaped, or "" for anything else. Bytes that are not UTF-8
// are kept as they are.
func (j JSON) String() string {
	v := j.trim()
	if len(v) < 2 || v[0] != '"' {
		return ""
	}
	s, _, ok := readString(v, 0)
	if !ok {
		return ""
	}
	return s
}

// Bool returns a boolean value; false for anything else.
func (j JSON) Bool() bool { return string(j.trim()) == "true" }

// Int returns an integer value; 0 for anything else (1.0, 1e2 and numbers beyond int64 too, as
// json.Unmarshal into an int64 refuses them).
func (j JSON) Int() int64 {
	n, err := strconv.ParseInt(string(j.trim()), 10, 64)
	if err != nil {
		return 0
	}
	return n
}

// Strings returns the string elements of an array.
func (j JSON) Strings() []string {
	var out []string
	j.Elements(func(_ int, v JSON) bool {
		out = append(out, v.String())
		return true
	})
	return out
}

// StringMap returns an object's string values.
func (j JSON) StringMap() map[string]string {
	if !j.IsObject() {
		return nil
	}
	out := map[string]string{}
	j.Fields(func(k string, v JSON) bool {
		out[k] = v.String()
		return true
	})
	return out
}

// StringsMap returns an object's string-array values (user extra fields).
func (j JSON) StringsMap() map[string][]string {
	if !j.IsObject() {
		return nil
	}
	out := map[string][]string{}
	j.Fields(func(k string, v JSON) bool {
		out[k] = v.Strings()
		return true
	})
	return out
}

// Fields calls f for each key and value of an object until f returns false.
func (j JSON) Fields(f func(key string, value JSON) bool) {
	j.rawFields(func(rawKey, value JSON) bool {
		key, _, ok := readString(rawKey, 0)
		return ok && f(key, value)
	})
}

// Pick sets values[i] to the value of keys[i] in an object (the first, of a key given twice), nil
// when absent, in one pass over the object and without allocating: the way to read several
// fields (one Get per field walks the object once each).
func (j JSON) Pick(keys []string, values []JSON) {
	clear(values)
	left := min(len(keys), len(values))
	j.rawFields(func(rawKey, value JSON) bool {
		for i, k := range keys[:min(len(keys), len(values))] {
			if values[i] == nil && keyIs(rawKey, k) {
				values[i] = value
				left--
			}
		}
		return left > 0
	})
}

// rawFields calls f for each key, still quoted and escaped, and value of an object until f
// returns false.
func (j JSON) rawFields(f func(rawKey, value JSON) bool) {
	v := j.trim()
	if len(v) == 0 || v[0] != '{' {
		return
	}
	i := skipWS(v, 1)
	for i < len(v) && v[i] == '"' {
		next, ok := skipString(v, i)
		if !ok {
			return
		}
		rawKey := v[i:next]
		i = skipWS(v, next)
		if i >= len(v) || v[i] != ':' {
			return
		}
		start := skipWS(v, i+1)
		end, ok := skipValue(v, start)
		if !ok {
			return
		}
		if !f(rawKey, v[start:end]) {
			return
		}
		i = skipWS(v, end)
		if i < len(v) && v[i] == ',' {
			i = skipWS(v, i+1)
		}
	}
}

// keyIs reports whether the quoted key rawKey is key, without allocating unless rawKey holds
// escapes.
func keyIs(rawKey JSON, key string) bool {
	inner := rawKey[1 : len(rawKey)-1]
	for _, c := range inner {
		if c == '\\' {
			k, _, ok := readString(rawKey, 0)
			return ok && k == key
		}
	}
	return string(inner) == key
}

// Elements calls f for each element of an array until f returns false.
func (j JSON) Elements(f func(i int, value JSON) bool) {
	v := j.trim()
	if len(v) == 0 || v[0] != '[' {
		return
	}
	i := skipWS(v, 1)
	for n := 0; i < len(v) && v[i] != ']'; n++ {
		end, ok := skipValue(v, i)
		if !ok || !f(n, v[i:end]) {
			return
		}
		i = skipWS(v, end)
		if i < len(v) && v[i] == ',' {
			i = skipWS(v, i+1)
		}
	}
}

// Valid reports whether j is exactly one well-formed JSON value (RFC 8259, as json.Valid
// checks it), nested at most 1000 deep.
func (j JSON) Valid() bool {
	end, ok := validValue(j, skipWS(j, 0), 0)
	return ok && skipWS(j, end) == len(j)
}

// validValue checks the value at i and returns the index past it.
func validValue(b []byte, i, depth int) (int, bool) {
	if i >= len(b) || depth > 1000 {
		return i, false
	}
	switch c := b[i]; {
	case c == '"':
		return validString(b, i)
	case c == '-' || (c >= '0' && c <= '9'):
		return validNumber(b, i)
	case c == '{':
		i = skipWS(b, i+1)
		if i < len(b) && b[i] == '}' {
			return i + 1, true
		}
		for {
			if i >= len(b) || b[i] != '"' {
				return i, false
			}
			end, ok := validString(b, i)
			if !ok {
				return i, false
			}
			i = skipWS(b, end)
			if i >= len(b) || b[i] != ':' {
				return i, false
			}
			if i, ok = validValue(b, skipWS(b, i+1), depth+1); !ok {
				return i, false
			}
			i = skipWS(b, i)
			if i < len(b) && b[i] == '}' {
				return i + 1, true
			}
			if i >= len(b) || b[i] != ',' {
				return i, false
			}
			i = skipWS(b, i+1)
		}
	case c == '[':
		i = skipWS(b, i+1)
		if i < len(b) && b[i] == ']' {
			return i + 1, true
		}
		for {
			var ok bool
			if i, ok = validValue(b, i, depth+1); !ok {
				return i, false
			}
			i = skipWS(b, i)
			if i < len(b) && b[i] == ']' {
				return i + 1, true
			}
			if i >= len(b) || b[i] != ',' {
				return i, false
			}
			i = skipWS(b, i+1)
		}
	}
	return skipValue(b, i) // true, false, null or nothing valid
}

// validString checks the string at b[i] == '"': no control characters, only JSON's escapes.
func validString(b []byte, i int) (int, bool) {
	for j := i + 1; j < len(b); j++ {
		c := b[j]
		if c > '\\' || (c >= 0x20 && c != '"' && c != '\\') { // most bytes: one or two comparisons
			continue
		}
		switch {
		case c == '"':
			return j + 1, true
		case c < 0x20:
			return j, false
		}
		if j+1 >= len(b) { // a backslash
			return j, false
		}
		switch b[j+1] {
		case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
			j++
		case 'u':
			if _, ok := hex4(b, j+2); !ok {
				return j, false
			}
			j += 5
		default:
			return j, false
		}
	}
	return len(b), false
}

// validNumber checks the number at i: -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?
func validNumber(b []byte, i int) (int, bool) {
	digits := func(j int) int {
		for j < len(b) && b[j] >= '0' && b[j] <= '9' {
			j++
		}
		return j
	}
	if b[i] == '-' {
		i++
	}
	switch {
	case i < len(b) && b[i] == '0':
		i++
	case i < len(b) && b[i] >= '1' && b[i] <= '9':
		i = digits(i + 1)
	default:
		return i, false
	}
	if i < len(b) && b[i] == '.' {
		if end := digits(i + 1); end > i+1 {
			i = end
		} else {
			return i, false
		}
	}
	if i < len(b) && (b[i] == 'e' || b[i] == 'E') {
		i++
		if i < len(b) && (b[i] == '+' || b[i] == '-') {
			i++
		}
		if end := digits(i); end > i {
			i = end
		} else {
			return i, false
		}
	}
	return i, true
}

func (j JSON) trim() JSON {
	i := skipWS(j, 0)
	k := len(j)
	for k > i && isWS(j[k-1]) {
		k--
	}
	return j[i:k]
}

func (j JSON) field(key string) JSON {
	var found JSON
	j.rawFields(func(rawKey, v JSON) bool {
		if keyIs(rawKey, key) {
			found = v
			return false
		}
		return true
	})
	return found
}

func isWS(c byte) bool { return c == ' ' || c == '\t' || c == '\n' || c == '\r' }

func skipWS(b []byte, i int) int {
	for i < len(b) && isWS(b[i]) {
		i++
	}
	return i
}

// skipValue returns the index just past the value starting at i.
func skipValue(b []byte, i int) (int, bool) {
	if i >= len(b) {
		return i, false
	}
	switch c := b[i]; {
	case c == '"':
		return skipString(b, i)
	case c == '{' || c == '[':
		return skipContainer(b, i)
	case c == 't':
		return literal(b, i, "true")
	case c == 'f':
		return literal(b, i, "false")
	case c == 'n':
		return literal(b, i, "null")
	case c == '-' || (c >= '0' && c <= '9'):
		j := i + 1
		for j < len(b) && (b[j] >= '0' && b[j] <= '9' || b[j] == '.' || b[j] == 'e' || b[j] == 'E' || b[j] == '+' || b[j] == '-') {
			j++
		}
		return j, true
	}
	return i, false
}

func literal(b []byte, i int, lit string) (int, bool) {
	if i+len(lit) <= len(b) && string(b[i:i+len(lit)]) == lit {
		return i + len(lit), true
	}
	return i, false
}

func skipString(b []byte, i int) (int, bool) {
	for j := i + 1; j < len(b); j++ {
		switch b[j] {
		case '\\':
			j++
		case '"':
			return j + 1, true
		}
	}
	return i, false
}

// skipContainer skips an object or array, checking that brackets balance outside strings.
func skipContainer(b []byte, i int) (int, bool) {
	depth := 0
	for j := i; j < len(b); j++ {
		switch b[j] {
		case '"':
			end, ok := skipString(b, j)
			if !ok {
				return i, false
			}
			j = end - 1
		case '{', '[':
			depth++
		case '}', ']':
			depth--
			if depth == 0 {
				return j + 1, true
			}
		}
	}
	return i, false
}

// readString decodes the string starting at b[i] == '"' and returns it and the index past it.
func readString(b []byte, i int) (string, int, bool) {
	if i >= len(b) || b[i] != '"' {
		return "", i, false
	}
	j := i + 1
	for j < len(b) && b[j] != '"' && b[j] != '\\' {
		j++
	}
	if j < len(b) && b[j] == '"' {
		return string(b[i+1 : j]), j + 1, true
	}
	out := append([]byte(nil), b[i+1:j]...)
	for j < len(b) {
		c := b[j]
		switch {
		case c == '"':
			return string(out), j + 1, true
		case c != '\\':
			out = append(out, c)
			j++
			continue
		}
		var ok bool
		if out, j, ok = unescape(out, b, j); !ok {
			return "", i, false
		}
	}
	return "", i, false
}

// unescape appends what the escape sequence at b[j] (a backslash) stands for to out, and
// returns where the string goes on; ok is false for an invalid escape.
func unescape(out, b []byte, j int) (_ []byte, next int, ok bool) {
	if j+1 >= len(b) {
		return out, j, false
	}
	e := b[j+1]
	j += 2
	switch e {
	case '"', '\\', '/':
		return append(out, e), j, true
	case 'b':
		return append(out, '\b'), j, true
	case 'f':
		return append(out, '\f'), j, true
	case 'n':
		return append(out, '\n'), j, true
	case 'r':
		return append(out, '\r'), j, true
	case 't':
		return append(out, '\t'), j, true
	case 'u':
		r, ok := hex4(b, j)
		if !ok {
			return out, j, false
		}
		j += 4
		if utf16.IsSurrogate(r) {
			r, j = surrogatePair(b, r, j)
		}
		return utf8.AppendRune(out, r), j, true
	}
	return out, j, false
}

// surrogatePair completes the UTF-16 surrogate r with the \uXXXX escape at b[j], if there is a
// valid one; otherwise r stands alone and is replaced by U+FFFD.
func surrogatePair(b []byte, r rune, j int) (rune, int) {
	if r2, ok := hex4(b, j+2); ok && j+1 < len(b) && b[j] == '\\' && b[j+1] == 'u' {
		if dec := utf16.DecodeRune(r, r2); dec != utf8.RuneError {
			return dec, j + 6
		}
	}
	return utf8.RuneError, j
}

func hex4(b []byte, i int) (rune, bool) {
	if i+4 > len(b) {
		return 0, false
	}
	var r rune
	for _, c := range b[i : i+4] {
		switch {
		case c >= '0' && c <= '9':
			r = r<<4 | rune(c-'0')
		case c >= 'a' && c <= 'f':
			r = r<<4 | rune(c-'a'+10)
		case c >= 'A' && c <= 'F':
			r = r<<4 | rune(c-'A'+10)
		default:
			return 0, false
		}
	}
	return r, true
}
