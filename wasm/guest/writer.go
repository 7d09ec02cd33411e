package guest

import (
	"encoding/base64"
	"maps"
	"slices"
	"strconv"
	"unicode/utf8"
)

// Writer builds JSON by appending; it does no validation beyond what its methods imply. It
// exists so modules need no encoding/json (see the package notes).
//
// # Notes
//
//   - Calls that nest properly (a Key before each value in an object) write valid JSON, which
//     encoding/json decodes to the values given; Raw is written as it is. FuzzWriter checks it.
type Writer struct {
	b     []byte
	comma []bool // per open object/array: a value was written, the next needs a comma
}

// Bytes is the JSON written so far.
func (w *Writer) Bytes() []byte { return w.b }

func (w *Writer) sep() {
	if n := len(w.comma); n > 0 {
		if w.comma[n-1] {
			w.b = append(w.b, ',')
		}
		w.comma[n-1] = true
	}
}

// ObjectStart opens an object.
func (w *Writer) ObjectStart() *Writer {
	w.sep()
	w.b = append(w.b, '{')
	w.comma = append(w.comma, false)
	return w
}

// ObjectEnd closes an object.
func (w *Writer) ObjectEnd() *Writer {
	w.b = append(w.b, '}')
	w.comma = w.comma[:len(w.comma)-1]
	return w
}

// ArrayStart opens an array.
func (w *Writer) ArrayStart() *Writer {
	w.sep()
	w.b = append(w.b, '[')
	w.comma = append(w.comma, false)
	return w
}

// ArrayEnd closes an array.
func (w *Writer) ArrayEnd() *Writer {
	w.b = append(w.b, ']')
	w.comma = w.comma[:len(w.comma)-1]
	return w
}

// Key writes an object key; the next call writes its value.
func (w *Writer) Key(k string) *Writer {
	w.sep()
	w.b = appendString(w.b, k)
	w.b = append(w.b, ':')
	if n := len(w.comma); n > 0 {
		w.comma[n-1] = false // the value that follows needs no comma
	}
	return w
}

func (w *Writer) value(f func([]byte) []byte) *Writer {
	w.sep()
	w.b = f(w.b)
	return w
}

// String writes a string value.
func (w *Writer) String(s string) *Writer {
	return w.value(func(b []byte) []byte { return appendString(b, s) })
}

// Bool writes true or false.
func (w *Writer) Bool(v bool) *Writer {
	return w.value(func(b []byte) []byte { return strconv.AppendBool(b, v) })
}

// Int writes an integer.
func (w *Writer) Int(v int64) *Writer {
	return w.value(func(b []byte) []byte { return strconv.AppendInt(b, v, 10) })
}

// Raw writes JSON as it is (null when empty).
func (w *Writer) Raw(j []byte) *Writer {
	if len(j) == 0 {
		j = []byte("null")
	}
	return w.value(func(b []byte) []byte { return append(b, j...) })
}

// Base64 writes data as a base64 string, as encoding/json encodes []byte.
func (w *Writer) Base64(data []byte) *Writer {
	return w.value(func(b []byte) []byte {
		b = append(b, '"')
		b = base64.StdEncoding.AppendEncode(b, data)
		return append(b, '"')
	})
}

// Strings writes an array of strings.
func (w *Writer) Strings(ss []string) *Writer {
	w.ArrayStart()
	for _, s := range ss {
		w.String(s)
	}
	return w.ArrayEnd()
}

// StringMap writes an object of strings, keys sorted for deterministic output.
func (w *Writer) StringMap(m map[string]string) *Writer {
	w.ObjectStart()
	for _, k := range slices.Sorted(maps.Keys(m)) {
		w.Key(k).String(m[k])
	}
	return w.ObjectEnd()
}

// StringsMap writes an object of string arrays, keys sorted for deterministic output.
func (w *Writer) StringsMap(m map[string][]string) *Writer {
	w.ObjectStart()
	for _, k := range slices.Sorted(maps.Keys(m)) {
		w.Key(k).Strings(m[k])
	}
	return w.ObjectEnd()
}

const hex = "0123456789abcdef"

// appendString appends s as a JSON string that encoding/json reads as it would read its own
// encoding of s (bytes that are not UTF-8 become U+FFFD). The bytes may differ: no HTML
// escaping, U+2028 and U+2029 kept, \b and \f written as \u0008 and \u000c.
func appendString(b []byte, s string) []byte {
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '"', '\\':
				b = append(b, '\\', c)
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
			i += size
			start = i
			continue
		}
		i += size
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}
