package profiles

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"unicode"

	yamlv3 "go.yaml.in/yaml/v3"
	"k8s.io/apimachinery/pkg/util/validation/field"
	kjson "sigs.k8s.io/json"
	"sigs.k8s.io/yaml"
)

// Loaded is a decoded, defaulted and validated profile together with where it came from.
type Loaded struct {
	*Profile
	// Source is the file the profile was read from, or "builtin:NAME".
	Source string
	// Raw is the document as read.
	Raw []byte
}

// IsBuiltin reports whether the profile is one of the profiles embedded in the binary.
func (l *Loaded) IsBuiltin() bool { return strings.HasPrefix(l.Source, BuiltinPrefix) }

// ResolvePath makes a path from the profile absolute: relative paths are relative to the profile
// file's directory (for built-in profiles, to the working directory).
func (l *Loaded) ResolvePath(p string) string {
	if p == "" || filepath.IsAbs(p) || strings.HasPrefix(p, BuiltinPrefix) || IsRemoteModule(p) {
		return p
	}
	if l.IsBuiltin() {
		abs, err := filepath.Abs(p)
		if err != nil {
			return p
		}
		return abs
	}
	return filepath.Join(filepath.Dir(l.Source), p)
}

// LoadFile reads, decodes strictly, defaults and validates the profile at path.
func LoadFile(path string) (*Loaded, error) {
	data, abs, err := readDocument(path, "profile")
	if err != nil {
		return nil, err
	}
	return Parse(data, abs)
}

// readDocument reads the document (a what) at path and makes path absolute, for errors and for
// paths relative to the document.
func readDocument(path, what string) (data []byte, abs string, err error) {
	if data, err = os.ReadFile(path); err != nil {
		return nil, "", fmt.Errorf("read %s: %w", what, err)
	}
	if abs, err = filepath.Abs(path); err != nil {
		abs = path
	}
	return data, abs, nil
}

// Parse decodes data strictly, applies defaults and validates. source names the document in
// errors (a file path or builtin:NAME).
//
// # Notes
//
//   - Unknown and duplicated fields are errors, as are wrong types; each error names the source,
//     the line when it can be found and the field path.
//   - Only apiVersion wasmkube.dev/v1alpha1, kind Profile is accepted.
func Parse(data []byte, source string) (*Loaded, error) {
	lines, err := newLineIndex(data)
	if err != nil {
		return nil, fmt.Errorf("profile %s: not valid YAML: %w", source, err)
	}
	if err := checkKind(data, "profile", source, lines, Kind); err != nil {
		return nil, err
	}
	p := &Profile{}
	if err := decodeStrict(data, "profile", source, lines, p, func() field.ErrorList { return Validate(p) }); err != nil {
		return nil, err
	}
	l := &Loaded{Profile: p, Source: source, Raw: data}
	l.resolveArgPaths()
	return l, nil
}

// decodeStrict decodes the YAML or JSON document data into v, rejecting unknown and duplicated
// fields and wrong types, then runs validate. Errors start with what and source and name the
// line of each field they can find.
func decodeStrict(data []byte, what, source string, lines *lineIndex, v any, validate func() field.ErrorList) error {
	jsonData, err := yaml.YAMLToJSON(data)
	if err != nil {
		return fmt.Errorf("%s %s: not valid YAML: %w", what, source, err)
	}
	strictErrs, err := kjson.UnmarshalStrict(jsonData, v)
	if err != nil {
		return decodeError(what, source, lines, err)
	}
	if len(strictErrs) > 0 {
		return strictError(what, source, lines, strictErrs)
	}
	if errs := validate(); len(errs) > 0 {
		return validationError(what, source, lines, errs)
	}
	return nil
}

// checkKind sniffs apiVersion and kind before decoding the rest, so that a document of another
// kind or version (what says what is wanted) gets an error about that rather than its fields.
func checkKind(data []byte, what, source string, lines *lineIndex, kind string) error {
	var tm struct {
		APIVersion string `json:"apiVersion"`
		Kind       string `json:"kind"`
	}
	if err := yaml.Unmarshal(data, &tm); err != nil {
		return fmt.Errorf("%s %s: not valid YAML: %w", what, source, err)
	}
	switch {
	case tm.APIVersion == "" || tm.Kind == "":
		return fmt.Errorf("%s %s: missing apiVersion or kind; a %s starts with\n  apiVersion: %s\n  kind: %s", what, source, what, APIVersion, kind)
	case tm.APIVersion != APIVersion:
		return fmt.Errorf("%s %s%s: apiVersion %q is not supported; use %q", what, source, lines.at("apiVersion"), tm.APIVersion, APIVersion)
	case tm.Kind != kind:
		return fmt.Errorf("%s %s%s: kind %q is not a %s; use %q", what, source, lines.at("kind"), tm.Kind, what, kind)
	}
	return nil
}

var strictFieldRE = regexp.MustCompile(`(unknown|duplicate) field "([^"]*)"`)

func strictError(what, source string, lines *lineIndex, errs []error) error {
	msgs := make([]string, 0, len(errs))
	for _, e := range errs {
		m := strictFieldRE.FindStringSubmatch(e.Error())
		if m == nil {
			msgs = append(msgs, fmt.Sprintf("%s: %v", source, e))
			continue
		}
		path := m[2]
		hint := "remove it or fix its spelling (" + fieldDocs(what) + " lists the fields)"
		if m[1] == "duplicate" {
			hint = "keep only one"
		}
		msgs = append(msgs, fmt.Sprintf("%s%s: %s field %q: %s", source, lines.at(path), m[1], path, hint))
	}
	return fmt.Errorf("%s %s is invalid:\n  %s", what, source, strings.Join(msgs, "\n  "))
}

// fieldDocs is the page that lists the fields of a document of kind what.
func fieldDocs(what string) string {
	if what == "test suite" {
		return "docs/authoring.md"
	}
	return "docs/profiles.md"
}

var typeErrRE = regexp.MustCompile(`cannot unmarshal (.+) into Go struct field [A-Za-z0-9_]+\.(\S+) of type (\S+)`)

// decodeError turns a JSON decoding error into one that names the field and line. The JSON
// decoder's type error is internal to sigs.k8s.io/json, so its message is parsed.
func decodeError(what, source string, lines *lineIndex, err error) error {
	if m := typeErrRE.FindStringSubmatch(err.Error()); m != nil {
		path, line := lines.locate(m[2], m[1])
		return fmt.Errorf("%s %s%s: field %q: got %s, want %s", what, source, line, path, m[1], goTypeName(m[3]))
	}
	return fmt.Errorf("%s %s: %w", what, source, err)
}

// locate finds the field of a type error in the document. typePath is the decoder's path: JSON
// names, the Go names of inline structs (dropped here) and no list indexes; got is what the
// document holds there (string, number, bool, array or object). It returns the path with the
// indexes of the first list entries that hold such a value there (else any value), and ":LINE";
// when the path is not in the document, the path without Go names and the line of its longest
// prefix that is.
func (li *lineIndex) locate(typePath, got string) (path, line string) {
	var keys []string
	for _, k := range strings.Split(typePath, ".") {
		if k != "" && !unicode.IsUpper(rune(k[0])) {
			keys = append(keys, k)
		}
	}
	plain := strings.Join(keys, ".")
	if li.root == nil {
		return plain, ""
	}
	for _, kind := range []string{got, ""} {
		if p, n, ok := locateIn(li.root, keys, kind, "", 0); ok && n > 0 {
			return p, ":" + strconv.Itoa(n)
		}
	}
	return plain, li.at(plain)
}

// locateIn follows keys from node, trying each entry of the lists on the way, to a value of
// kind (any when empty). prefix is the path so far and line that of its last key.
func locateIn(node *yamlv3.Node, keys []string, kind, prefix string, line int) (string, int, bool) {
	if node.Kind == yamlv3.AliasNode && node.Alias != nil {
		node = node.Alias
	}
	switch {
	case len(keys) == 0:
		return prefix, line, kind == "" || holds(node, kind) || holdsElement(node, kind)
	case node.Kind == yamlv3.SequenceNode:
		for i, item := range node.Content {
			if p, n, ok := locateIn(item, keys, kind, prefix+"["+strconv.Itoa(i)+"]", item.Line); ok {
				return p, n, true
			}
		}
	case node.Kind == yamlv3.MappingNode:
		var key, value *yamlv3.Node
		for i := 0; i+1 < len(node.Content); i += 2 {
			if node.Content[i].Value == keys[0] { // the last occurrence, as the decoder reads it
				key, value = node.Content[i], node.Content[i+1]
			}
		}
		if key != nil {
			if prefix != "" {
				prefix += "."
			}
			return locateIn(value, keys[1:], kind, prefix+keys[0], key.Line)
		}
	}
	return "", 0, false
}

// holdsElement reports whether an element of a list or a value of a map in node is of kind:
// the decoder names the list or map when one of its elements has the wrong type.
func holdsElement(node *yamlv3.Node, kind string) bool {
	switch node.Kind {
	case yamlv3.SequenceNode:
		return slices.ContainsFunc(node.Content, func(n *yamlv3.Node) bool { return holds(n, kind) })
	case yamlv3.MappingNode:
		for i := 1; i < len(node.Content); i += 2 {
			if holds(node.Content[i], kind) {
				return true
			}
		}
	}
	return false
}

// holds reports whether node holds a JSON value of kind (as a decoding error names it).
func holds(node *yamlv3.Node, kind string) bool {
	switch {
	case kind == "array":
		return node.Kind == yamlv3.SequenceNode
	case kind == "object":
		return node.Kind == yamlv3.MappingNode
	case kind == "string":
		return node.Kind == yamlv3.ScalarNode && node.Tag == "!!str"
	case kind == "bool":
		return node.Kind == yamlv3.ScalarNode && node.Tag == "!!bool"
	case strings.HasPrefix(kind, "number"):
		return node.Kind == yamlv3.ScalarNode && (node.Tag == "!!int" || node.Tag == "!!float")
	}
	return false
}

func goTypeName(t string) string {
	switch {
	case strings.HasPrefix(t, "[]"):
		return "a list"
	case strings.HasPrefix(t, "map["), strings.Contains(t, "."):
		return "an object"
	case strings.HasPrefix(t, "int"), strings.HasPrefix(t, "uint"):
		return "an integer"
	case t == "bool":
		return "true or false"
	case t == "string":
		return "a string"
	}
	return t
}

func validationError(what, source string, lines *lineIndex, errs field.ErrorList) error {
	msgs := make([]string, 0, len(errs))
	for _, e := range errs {
		msgs = append(msgs, fmt.Sprintf("%s%s: %s", source, lines.at(e.Field), e.Error()))
	}
	return fmt.Errorf("%s %s is invalid:\n  %s", what, source, strings.Join(msgs, "\n  "))
}

// lineIndex finds the line of a field path such as "admission.modules[0].rules" in a YAML document.
type lineIndex struct{ root *yamlv3.Node }

// newLineIndex parses data as YAML; it also catches what the YAML-to-JSON conversion would hide,
// such as a key given twice in one mapping.
func newLineIndex(data []byte) (*lineIndex, error) {
	var generic any
	if err := yamlv3.Unmarshal(data, &generic); err != nil {
		return nil, err
	}
	var doc yamlv3.Node
	dec := yamlv3.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			return &lineIndex{}, nil
		}
		return nil, err
	}
	if len(doc.Content) == 0 {
		return &lineIndex{}, nil
	}
	return &lineIndex{root: doc.Content[0]}, nil
}

// at returns ":LINE" for the field path, or "" when the path cannot be found.
func (li *lineIndex) at(path string) string {
	if n := li.find(path); n > 0 {
		return ":" + strconv.Itoa(n)
	}
	return ""
}

func (li *lineIndex) find(path string) int {
	node := li.root
	if node == nil {
		return 0
	}
	line := 0
	for _, step := range splitPath(path) {
		switch {
		case step.index >= 0:
			if node.Kind != yamlv3.SequenceNode || step.index >= len(node.Content) {
				return line
			}
			node = node.Content[step.index]
		default:
			if node.Kind != yamlv3.MappingNode {
				return line
			}
			var next *yamlv3.Node
			// The last occurrence: for a duplicated key, that is the one to point at.
			for i := 0; i+1 < len(node.Content); i += 2 {
				if node.Content[i].Value == step.key {
					next = node.Content[i+1]
					line = node.Content[i].Line
				}
			}
			if next == nil {
				return line
			}
			node = next
			continue
		}
		line = node.Line
	}
	return line
}

type pathStep struct {
	key   string
	index int
}

// splitPath splits "a.b[2].c" into steps; -1 marks a key step.
func splitPath(path string) []pathStep {
	var steps []pathStep
	for _, part := range strings.Split(path, ".") {
		for part != "" {
			open := strings.IndexByte(part, '[')
			if open < 0 {
				steps = append(steps, pathStep{key: part, index: -1})
				break
			}
			if open > 0 {
				steps = append(steps, pathStep{key: part[:open], index: -1})
			}
			closing := strings.IndexByte(part[open:], ']')
			if closing < 0 {
				break
			}
			i, err := strconv.Atoi(part[open+1 : open+closing])
			if err != nil {
				break
			}
			steps = append(steps, pathStep{index: i})
			part = part[open+closing+1:]
		}
	}
	return steps
}

// ErrNotFound is returned by Resolve when no profile of that name exists.
var ErrNotFound = errors.New("profile not found")
