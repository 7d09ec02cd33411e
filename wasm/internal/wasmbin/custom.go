package wasmbin

// CustomSection returns the payload of the first custom section called name (the bytes after
// its name), and whether there is one.
func CustomSection(bin []byte, name string) ([]byte, bool, error) {
	secs, err := splitSections(bin)
	if err != nil {
		return nil, false, err
	}
	for _, s := range secs {
		if s.id == secCustom && s.name == name {
			return customPayload(s), true, nil
		}
	}
	return nil, false, nil
}

// SetCustomSection returns bin with the custom section called name holding payload: every
// existing section of that name is removed and the new one appended at the end (custom sections
// may sit anywhere). bin is not modified.
func SetCustomSection(bin []byte, name string, payload []byte) ([]byte, error) {
	secs, err := splitSections(bin)
	if err != nil {
		return nil, err
	}
	out := append([]byte(nil), header...)
	for _, s := range secs {
		if s.id == secCustom && s.name == name {
			continue
		}
		out = append(out, s.id)
		out = appendU32(out, uint32(len(s.content)))
		out = append(out, s.content...)
	}
	content := appendU32(nil, uint32(len(name)))
	content = append(append(content, name...), payload...)
	out = append(out, secCustom)
	out = appendU32(out, uint32(len(content)))
	return append(out, content...), nil
}

// customPayload skips the name at the start of a custom section's content.
func customPayload(s section) []byte {
	r := &reader{b: s.content}
	n, _ := r.u32() // read once by splitSections
	return s.content[r.pos+int(n):]
}
