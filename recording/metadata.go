package recording

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"strings"
)

// MaxMetadataSize bounds a recording.json (Parse refuses larger input). A
// header-only envelope to a few RSA keys takes 1–3 KiB of PEM, so this
// allows hundreds of media files.
const MaxMetadataSize = 4 << 20

// maxMediaFiles bounds the entries of mediaFiles.
const maxMediaFiles = 10000

// Errors. Parse errors wrap ErrMalformed (or ErrTooLarge); Media errors wrap
// ErrNoMedia; Header errors wrap ErrNotEncrypted or ErrMalformed.
var (
	ErrMalformed    = errors.New("recording: malformed metadata")
	ErrTooLarge     = errors.New("recording: metadata too large")
	ErrNoMedia      = errors.New("recording: no such media file")
	ErrNotEncrypted = errors.New("recording: media file has no pkcs7 envelope")
)

func malformed(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrMalformed, fmt.Sprintf(format, args...))
}

// Metadata is a recording's metadata (recording.json) as the recorder writes
// it. The exported fields are what was read; the JSON members this package
// does not know are kept, in their order and as they were written, and
// WriteTo writes them back.
type Metadata struct {
	// ID is the recording id (member "id"); empty when absent.
	ID string
	// MediaFiles are the entries of "mediaFiles", in order.
	MediaFiles []*MediaFile

	obj object
}

// MediaFile is one entry of mediaFiles.
type MediaFile struct {
	// MediaID names the media file ("mediaId"), e.g.
	// "<uuid>_Voice_Rec.mp3.bin".
	MediaID string
	// Type is its MIME type ("type"), e.g. "audio/mp3" or "video/mp4".
	Type string
	// Tenant is the tenant it belongs to ("tenant"); may be empty.
	Tenant string
	// MediaURI is where the media can be fetched ("mediaUri"); may be empty.
	MediaURI string
	// Storage and Path are originalMediaDescriptor.storage and .path: the
	// storage kind (e.g. "webDAV") and the media's path in it.
	Storage, Path string
	// PKCS7 is the header-only envelope as stored ("pkcs7", PEM); empty for
	// an unencrypted media file. SetHeader replaces it.
	PKCS7 string

	obj object
}

// member is one name/value pair of a JSON object, value as written.
type member struct {
	name  string
	value json.RawMessage
}

// object is a JSON object that keeps its members' order and bytes.
type object []member

func (o object) get(name string) (json.RawMessage, bool) {
	for _, m := range o {
		if m.name == name {
			return m.value, true
		}
	}
	return nil, false
}

// set replaces a member's value, or appends the member.
func (o *object) set(name string, v json.RawMessage) {
	for i := range *o {
		if (*o)[i].name == name {
			(*o)[i].value = v
			return
		}
	}
	*o = append(*o, member{name, v})
}

// parseObject decodes a JSON object whose duplicate names are refused (two
// "pkcs7" members would make any answer a guess). what names it in errors.
func parseObject(b []byte, what string) (object, error) {
	dec := json.NewDecoder(bytes.NewReader(b))
	tok, err := dec.Token()
	if err != nil {
		return nil, malformed("%s: %s", what, jsonMsg(err))
	}
	if d, ok := tok.(json.Delim); !ok || d != '{' {
		return nil, malformed("%s is not a JSON object", what)
	}
	var o object
	seen := map[string]bool{}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, malformed("%s: %s", what, jsonMsg(err))
		}
		name := tok.(string) // the decoder guarantees a string key here
		if seen[name] {
			return nil, malformed("%s: member %q appears twice", what, name)
		}
		seen[name] = true
		var v json.RawMessage
		if err := dec.Decode(&v); err != nil {
			return nil, malformed("%s: member %q: %s", what, name, jsonMsg(err))
		}
		o = append(o, member{name, v})
	}
	if _, err := dec.Token(); err != nil {
		return nil, malformed("%s: %s", what, jsonMsg(err))
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, malformed("%s: trailing data after the JSON object", what)
	}
	return o, nil
}

func jsonMsg(err error) string {
	if err == io.EOF || err == io.ErrUnexpectedEOF {
		return "unexpected end of JSON"
	}
	var se *json.SyntaxError
	if errors.As(err, &se) {
		return fmt.Sprintf("%s (at byte %d)", se.Error(), se.Offset)
	}
	return err.Error()
}

// str reads an optional string member of o.
func str(o object, name, what string) (string, error) {
	v, ok := o.get(name)
	if !ok || string(v) == "null" {
		return "", nil
	}
	var s string
	if err := json.Unmarshal(v, &s); err != nil {
		return "", malformed("%s: %q is not a string", what, name)
	}
	return s, nil
}

// Parse reads a recording.json of at most MaxMetadataSize bytes. It needs a
// JSON object with an array "mediaFiles" of objects; "id", and in each media
// file "mediaId", "type", "tenant", "mediaUri", "pkcs7" and
// "originalMediaDescriptor" {"storage", "path"}, are read when present and
// must then have those types. Names appearing twice in an object, and two
// media files with the same mediaId, are refused.
func Parse(r io.Reader) (*Metadata, error) {
	b, err := io.ReadAll(io.LimitReader(r, MaxMetadataSize+1))
	if err != nil {
		return nil, fmt.Errorf("recording: reading metadata: %w", err)
	}
	if len(b) > MaxMetadataSize {
		return nil, fmt.Errorf("%w: more than %d bytes", ErrTooLarge, MaxMetadataSize)
	}
	return parse(b)
}

func parse(b []byte) (*Metadata, error) {
	if len(bytes.TrimSpace(b)) == 0 {
		return nil, malformed("empty input")
	}
	o, err := parseObject(b, "recording.json")
	if err != nil {
		return nil, err
	}
	m := &Metadata{obj: o}
	if m.ID, err = str(o, "id", "recording.json"); err != nil {
		return nil, err
	}
	mf, ok := o.get("mediaFiles")
	if !ok {
		return nil, malformed(`recording.json has no "mediaFiles"`)
	}
	var entries []json.RawMessage
	if err := json.Unmarshal(mf, &entries); err != nil {
		return nil, malformed(`"mediaFiles" is not an array`)
	}
	if len(entries) > maxMediaFiles {
		return nil, malformed(`"mediaFiles" has %d entries (at most %d)`, len(entries), maxMediaFiles)
	}
	seen := map[string]bool{}
	for i, e := range entries {
		what := fmt.Sprintf("mediaFiles[%d]", i)
		f, err := parseMediaFile(e, what)
		if err != nil {
			return nil, err
		}
		if f.MediaID != "" {
			if seen[f.MediaID] {
				return nil, malformed("%s: mediaId %q appears twice", what, f.MediaID)
			}
			seen[f.MediaID] = true
		}
		m.MediaFiles = append(m.MediaFiles, f)
	}
	return m, nil
}

func parseMediaFile(b []byte, what string) (*MediaFile, error) {
	o, err := parseObject(b, what)
	if err != nil {
		return nil, err
	}
	f := &MediaFile{obj: o}
	for _, s := range []struct {
		dst  *string
		name string
	}{{&f.MediaID, "mediaId"}, {&f.Type, "type"}, {&f.Tenant, "tenant"}, {&f.MediaURI, "mediaUri"}, {&f.PKCS7, "pkcs7"}} {
		if *s.dst, err = str(o, s.name, what); err != nil {
			return nil, err
		}
	}
	if d, ok := o.get("originalMediaDescriptor"); ok && string(d) != "null" {
		do, err := parseObject(d, what+".originalMediaDescriptor")
		if err != nil {
			return nil, err
		}
		if f.Storage, err = str(do, "storage", what+".originalMediaDescriptor"); err != nil {
			return nil, err
		}
		if f.Path, err = str(do, "path", what+".originalMediaDescriptor"); err != nil {
			return nil, err
		}
	}
	return f, nil
}

// IDs returns the mediaId of every media file, in order.
func (m *Metadata) IDs() []string {
	ids := make([]string, len(m.MediaFiles))
	for i, f := range m.MediaFiles {
		ids[i] = f.MediaID
	}
	return ids
}

// Media returns the media file whose mediaId is id. With id empty it
// returns the only media file; when there are several, or none matches,
// the error (wrapping ErrNoMedia) lists the mediaIds there are.
func (m *Metadata) Media(id string) (*MediaFile, error) {
	if id == "" {
		switch len(m.MediaFiles) {
		case 1:
			return m.MediaFiles[0], nil
		case 0:
			return nil, fmt.Errorf("%w: the recording has no media files", ErrNoMedia)
		}
		return nil, fmt.Errorf("%w: the recording has %d media files, choose one: %s", ErrNoMedia, len(m.MediaFiles), m.listIDs())
	}
	for _, f := range m.MediaFiles {
		if f.MediaID == id {
			return f, nil
		}
	}
	return nil, fmt.Errorf("%w: %q is not among the media files: %s", ErrNoMedia, id, m.listIDs())
}

func (m *Metadata) listIDs() string {
	if len(m.MediaFiles) == 0 {
		return "(none)"
	}
	const show = 20
	var parts []string
	for i, f := range m.MediaFiles {
		if i == show {
			parts = append(parts, fmt.Sprintf("and %d more", len(m.MediaFiles)-show))
			break
		}
		parts = append(parts, fmt.Sprintf("%q", f.MediaID))
	}
	return strings.Join(parts, ", ")
}

// Header returns the DER of the media file's header-only envelope: the PEM
// block ("PKCS7" or "CMS") of its pkcs7 member, or that member's bare
// base64 DER. It does not check the envelope itself (see
// envelope.ParseHeader). ErrNotEncrypted when there is no pkcs7 member.
func (f *MediaFile) Header() ([]byte, error) {
	s := strings.TrimSpace(f.PKCS7)
	if s == "" {
		return nil, fmt.Errorf("%w (mediaId %q)", ErrNotEncrypted, f.MediaID)
	}
	if strings.HasPrefix(s, "-----BEGIN") {
		blk, rest := pem.Decode([]byte(s))
		if blk == nil {
			return nil, malformed("mediaId %q: pkcs7 is not a valid PEM block", f.MediaID)
		}
		if blk.Type != "PKCS7" && blk.Type != "CMS" {
			return nil, malformed("mediaId %q: pkcs7 holds a PEM %q block, not PKCS7", f.MediaID, blk.Type)
		}
		if len(bytes.TrimSpace(rest)) != 0 {
			return nil, malformed("mediaId %q: pkcs7 has data after its PEM block", f.MediaID)
		}
		return blk.Bytes, nil
	}
	der, err := base64.StdEncoding.DecodeString(strings.Join(strings.Fields(s), ""))
	if err != nil {
		return nil, malformed("mediaId %q: pkcs7 is neither PEM nor base64", f.MediaID)
	}
	return der, nil
}

// SetHeader replaces the media file's envelope with der (a header-only
// envelope), stored as a PEM "PKCS7" block as the recorder writes it.
func (f *MediaFile) SetHeader(der []byte) {
	f.PKCS7 = string(pem.EncodeToMemory(&pem.Block{Type: "PKCS7", Bytes: der}))
}

// WriteTo writes the metadata as indented JSON (two spaces, a final
// newline). Members keep their order; unknown members are written as they
// were read; the known string members are written from the exported fields
// (a field left empty whose member was absent stays absent).
func (m *Metadata) WriteTo(w io.Writer) (int64, error) {
	b, err := m.Marshal()
	if err != nil {
		return 0, err
	}
	n, err := w.Write(b)
	return int64(n), err
}

// Marshal returns what WriteTo writes.
func (m *Metadata) Marshal() ([]byte, error) {
	o := append(object(nil), m.obj...)
	if err := setStr(&o, "id", m.ID); err != nil {
		return nil, err
	}
	files := make([]json.RawMessage, len(m.MediaFiles))
	for i, f := range m.MediaFiles {
		b, err := f.marshal()
		if err != nil {
			return nil, err
		}
		files[i] = b
	}
	fb, err := marshalNoEscape(files)
	if err != nil {
		return nil, err
	}
	o.set("mediaFiles", fb)
	compact, err := o.marshal()
	if err != nil {
		return nil, err
	}
	var out bytes.Buffer
	if err := json.Indent(&out, compact, "", "  "); err != nil {
		return nil, err
	}
	out.WriteByte('\n')
	return out.Bytes(), nil
}

func (f *MediaFile) marshal() (json.RawMessage, error) {
	o := append(object(nil), f.obj...)
	for _, s := range []struct{ name, v string }{{"mediaId", f.MediaID}, {"type", f.Type}, {"tenant", f.Tenant}, {"mediaUri", f.MediaURI}, {"pkcs7", f.PKCS7}} {
		if err := setStr(&o, s.name, s.v); err != nil {
			return nil, err
		}
	}
	d, had := o.get("originalMediaDescriptor")
	if (had && string(d) != "null") || f.Storage != "" || f.Path != "" {
		var do object
		if had && string(d) != "null" {
			var err error
			if do, err = parseObject(d, "originalMediaDescriptor"); err != nil {
				return nil, err
			}
		}
		if err := setStr(&do, "storage", f.Storage); err != nil {
			return nil, err
		}
		if err := setStr(&do, "path", f.Path); err != nil {
			return nil, err
		}
		db, err := do.marshal()
		if err != nil {
			return nil, err
		}
		o.set("originalMediaDescriptor", db)
	}
	return o.marshal()
}

// setStr writes v as member name unless it equals what is there (so that
// the bytes of an unchanged member, escapes included, are kept) or v is
// empty and the member is absent or null.
func setStr(o *object, name, v string) error {
	old, ok := o.get(name)
	if !ok || string(old) == "null" {
		if v == "" {
			return nil
		}
	} else {
		var s string
		if json.Unmarshal(old, &s) == nil && s == v {
			return nil
		}
	}
	b, err := marshalNoEscape(v)
	if err != nil {
		return err
	}
	o.set(name, b)
	return nil
}

func (o object) marshal() ([]byte, error) {
	var b bytes.Buffer
	b.WriteByte('{')
	for i, m := range o {
		if i > 0 {
			b.WriteByte(',')
		}
		k, err := marshalNoEscape(m.name)
		if err != nil {
			return nil, err
		}
		b.Write(k)
		b.WriteByte(':')
		b.Write(m.value)
	}
	b.WriteByte('}')
	return b.Bytes(), nil
}

// marshalNoEscape is json.Marshal without HTML escaping (a PEM block stays
// readable), without the trailing newline of an Encoder.
func marshalNoEscape(v any) ([]byte, error) {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return bytes.TrimRight(b.Bytes(), "\n"), nil
}

// IsMetadata reports whether b looks like JSON metadata rather than an
// envelope (PEM, DER or BER): its first non-space byte is '{'.
func IsMetadata(b []byte) bool {
	t := bytes.TrimLeft(b, " \t\r\n")
	return len(t) > 0 && t[0] == '{'
}
