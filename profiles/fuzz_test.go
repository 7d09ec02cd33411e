package profiles

import (
	"bytes"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"unicode"

	apiequality "k8s.io/apimachinery/pkg/api/equality"
	"sigs.k8s.io/yaml"
)

// fuzzSource names the fuzzed document in errors.
const fuzzSource = "/profiles/fuzz.yaml"

// addDocumentedSeeds adds every profile and module list the repository documents or ships: the
// YAML examples of the docs and READMEs, the built-in profiles and the profiles' testdata.
func addDocumentedSeeds(f *testing.F, add func([]byte)) {
	var n int
	files, _ := filepath.Glob("testdata/*/*.yaml")
	builtins, _ := filepath.Glob("builtin/*.yaml")
	for _, file := range append(files, builtins...) {
		data, err := os.ReadFile(file)
		if err != nil {
			f.Fatal(err)
		}
		add(data)
		n++
	}
	docs, _ := filepath.Glob("../docs/*.md")
	readmes, _ := filepath.Glob("../examples/*/README.md")
	for _, doc := range append(append(docs, "../README.md"), readmes...) {
		data, err := os.ReadFile(doc)
		if err != nil {
			f.Fatal(err)
		}
		for _, m := range yamlBlockRE.FindAllSubmatch(data, -1) {
			add(m[1])
			n++
		}
	}
	if n < 20 {
		f.Fatalf("found %d documented profiles and module lists, want the docs' and testdata's", n)
	}
}

// FuzzParseProfile: Parse never panics; every error names the document, and each of its
// detail lines starts with the document's name and a line of the document when it gives one; a
// profile that loads names every module and encodes (YAML) to a document that loads to the same
// profile.
func FuzzParseProfile(f *testing.F) {
	addDocumentedSeeds(f, func(b []byte) { f.Add(b) })
	f.Fuzz(func(t *testing.T, data []byte) {
		p, err := Parse(data, fuzzSource)
		if err != nil {
			checkError(t, data, err, "profile")
			return
		}
		for _, m := range modules(p.Profile) {
			if m.Name == "" {
				t.Fatalf("module %q loaded without a name", m.Module)
			}
		}
		enc, err := yaml.Marshal(p.Profile)
		if err != nil {
			t.Fatalf("encode loaded profile: %v", err)
		}
		again, err := Parse(enc, fuzzSource)
		if err != nil {
			t.Fatalf("the loaded profile, encoded, does not load: %v\ninput:\n%s\nencoded:\n%s", err, data, enc)
		}
		if !apiequality.Semantic.DeepEqual(p.Profile, again.Profile) {
			t.Fatalf("round trip changed the profile:\n%#v\n%#v\nencoded:\n%s", p.Profile, again.Profile, enc)
		}
	})
}

// FuzzParseModuleList: the same properties for the original proof of concept's module lists,
// for each of the three hooks; module paths are absolute after decoding.
func FuzzParseModuleList(f *testing.F) {
	addDocumentedSeeds(f, func(b []byte) {
		for hook := range uint8(3) {
			f.Add(b, hook)
		}
	})
	hooks := []Hook{HookAuthentication, HookAuthorization, HookAdmission}
	f.Fuzz(func(t *testing.T, data []byte, h uint8) {
		hook := hooks[int(h)%len(hooks)]
		list, err := ParseModuleList(data, fuzzSource, "/profiles", hook)
		if err != nil {
			checkError(t, data, err, string(hook)+" module configuration")
			return
		}
		for i, m := range list.Modules {
			if !strings.HasPrefix(m.Module.Module, BuiltinPrefix) && !filepath.IsAbs(m.Module.Module) {
				t.Fatalf("modules[%d].module %q is not absolute after decoding", i, m.Module.Module)
			}
			if m.Name == "" {
				t.Fatalf("modules[%d] (%q) decoded without a name", i, m.Module.Module)
			}
		}
		enc, err := yaml.Marshal(list)
		if err != nil {
			t.Fatalf("encode module list: %v", err)
		}
		again, err := ParseModuleList(enc, fuzzSource, "/profiles", hook)
		if err != nil {
			t.Fatalf("the decoded list, encoded, does not decode: %v\ninput:\n%s\nencoded:\n%s", err, data, enc)
		}
		if !apiequality.Semantic.DeepEqual(list, again) {
			t.Fatalf("round trip changed the list:\n%#v\n%#v\nencoded:\n%s", list, again, enc)
		}
	})
}

// modules lists every module entry of p.
func modules(p *Profile) []Module {
	var out []Module
	if a := p.Authentication; a != nil {
		out = append(out, a.Modules...)
	}
	if a := p.Authorization; a != nil {
		for _, m := range a.Modules {
			out = append(out, m.Module)
		}
	}
	if a := p.Admission; a != nil {
		for _, m := range a.Modules {
			out = append(out, m.Module)
		}
	}
	return out
}

// detailRE is a detail line of an error: "SOURCE[:LINE]: what".
var detailRE = regexp.MustCompile(`^  ` + regexp.QuoteMeta(fuzzSource) + `(?::(\d+))?: \S`)

// lineRE finds "SOURCE:LINE" anywhere in an error.
var lineRE = regexp.MustCompile(regexp.QuoteMeta(fuzzSource) + `:(\d+)`)

// checkError checks that err starts with what and the document's name, that every detail line
// of an "is invalid" error names the document, and that every line it names exists.
func checkError(t *testing.T, data []byte, err error, what string) {
	t.Helper()
	msg := err.Error()
	if !strings.HasPrefix(msg, what+" "+fuzzSource) {
		t.Fatalf("error does not start with %q: %v", what+" "+fuzzSource, err)
	}
	lines := strings.Split(msg, "\n")
	if strings.HasSuffix(lines[0], " is invalid:") {
		if len(lines) < 2 {
			t.Fatalf("an invalid document without details: %v", err)
		}
		for _, l := range lines[1:] {
			if !detailRE.MatchString(l) {
				t.Fatalf("detail line %q does not name the document (and field): %v", l, err)
			}
		}
	}
	docLines := yamlLineRE.Split(string(data), -1)
	for _, m := range lineRE.FindAllStringSubmatch(msg, -1) {
		if n, _ := strconv.Atoi(m[1]); n < 1 || n > len(docLines) {
			t.Fatalf("error names line %d of a %d-line document: %v", n, len(docLines), err)
		}
	}
	// A wrong type names the field by its path in the document, at the line of its key.
	if m := typeErrorRE.FindStringSubmatch(msg); m != nil {
		keys := strings.Split(indexRE.ReplaceAllString(m[2], ""), ".")
		for _, k := range keys {
			if k == "" || unicode.IsUpper(rune(k[0])) {
				t.Fatalf("field path %q is not a path in the document: %v", m[2], err)
			}
		}
		n, _ := strconv.Atoi(m[1])
		if last := keys[len(keys)-1]; n > 0 && bytes.Count(data, []byte(last)) == 1 && !strings.Contains(docLines[n-1], last) {
			t.Fatalf("field %q is not on line %d: %v", m[2], n, err)
		}
	}
}

// typeErrorRE is an error about a wrong type: "SOURCE[:LINE]: field "PATH": got".
var typeErrorRE = regexp.MustCompile(regexp.QuoteMeta(fuzzSource) + `(?::(\d+))?: field "([^"]*)": got `)

// yamlLineRE is a line break as YAML counts lines.
var yamlLineRE = regexp.MustCompile("\r\n|[\r\n\u0085\u2028\u2029]")

// indexRE is a list index in a field path.
var indexRE = regexp.MustCompile(`\[\d+\]`)
