package recording_test

import (
	"bytes"
	"testing"

	"github.com/envelopd/envelopd/recording"
)

// FuzzParse: Parse never panics; what it accepts is written back as JSON
// that parses to the same values, and a second rewrite is byte-identical.
func FuzzParse(f *testing.F) {
	f.Add(readExample(f))
	f.Add([]byte(`{"id":"r","mediaFiles":[{"mediaId":"a","pkcs7":"MAMCAQA="},{"mediaId":"b","originalMediaDescriptor":{"path":"/x"}}]}`))
	f.Add([]byte(`{"mediaFiles":[],"u":{"v":[1,"\u00e9",null]}}`))
	f.Add([]byte(`{"mediaFiles":[{"mediaId":"a","mediaId":"b"}]}`))
	f.Add([]byte(`{"mediaFiles":null}`))
	f.Fuzz(func(t *testing.T, in []byte) {
		m, err := recording.Parse(bytes.NewReader(in))
		if err != nil {
			return
		}
		for _, mf := range m.MediaFiles {
			mf.Header() // must not panic
		}
		out, err := m.Marshal()
		if err != nil {
			t.Fatalf("Marshal of parsed input: %v", err)
		}
		m2, err := recording.Parse(bytes.NewReader(out))
		if err != nil {
			t.Fatalf("rewrite does not parse: %v\n%s", err, out)
		}
		if m2.ID != m.ID || len(m2.MediaFiles) != len(m.MediaFiles) {
			t.Fatalf("rewrite changed id or media count")
		}
		for i := range m.MediaFiles {
			a, b := m.MediaFiles[i], m2.MediaFiles[i]
			if a.MediaID != b.MediaID || a.Type != b.Type || a.Tenant != b.Tenant || a.MediaURI != b.MediaURI || a.PKCS7 != b.PKCS7 || a.Path != b.Path || a.Storage != b.Storage {
				t.Fatalf("rewrite changed media file %d: %+v vs %+v", i, a, b)
			}
		}
		out2, err := m2.Marshal()
		if err != nil || !bytes.Equal(out, out2) {
			t.Fatalf("second rewrite differs (%v):\n%s\n%s", err, out, out2)
		}
	})
}
