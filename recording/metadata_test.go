package recording_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"reflect"
	"strings"
	"testing"

	"github.com/envelopd/envelopd/envelope"
	"github.com/envelopd/envelopd/recording"
)

func readExample(t testing.TB) []byte {
	t.Helper()
	b, err := os.ReadFile("testdata/recording.json")
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestParseExample(t *testing.T) {
	m, err := recording.Parse(bytes.NewReader(readExample(t)))
	if err != nil {
		t.Fatal(err)
	}
	if m.ID != "0c4f8e2a-6b1d-4f3e-9a57-2d8c1e7b9f10" {
		t.Errorf("ID = %q", m.ID)
	}
	f, err := m.Media("")
	if err != nil {
		t.Fatal(err)
	}
	want := recording.MediaFile{
		MediaID:  "0c4f8e2a-6b1d-4f3e-9a57-2d8c1e7b9f10_Voice_Rec.mp3.bin",
		Type:     "audio/mp3",
		Tenant:   "Environment",
		MediaURI: "https://storage.example/recordings/2026/11/27/0c4f8e2a-6b1d-4f3e-9a57-2d8c1e7b9f10.mp3.bin",
		Storage:  "webDAV",
		Path:     "/recordings/2026/11/27/0c4f8e2a-6b1d-4f3e-9a57-2d8c1e7b9f10.mp3.bin",
	}
	got := *f
	got.PKCS7 = ""
	if got.MediaID != want.MediaID || got.Type != want.Type || got.Tenant != want.Tenant || got.MediaURI != want.MediaURI || got.Storage != want.Storage || got.Path != want.Path {
		t.Errorf("media file = %+v, want %+v", got, want)
	}
	der, err := f.Header()
	if err != nil {
		t.Fatal(err)
	}
	h, err := envelope.ParseHeader(der)
	if err != nil {
		t.Fatal(err)
	}
	if h.ContentPresent || h.Cipher != envelope.AES256CBC || len(h.Recipients) != 1 {
		t.Errorf("header = %+v", h)
	}
	if g, err := m.Media(want.MediaID); err != nil || g != f {
		t.Errorf("Media(%q) = %v, %v", want.MediaID, g, err)
	}
}

// TestRoundTrip: a rewrite keeps every member, known and unknown, and
// changes only the envelope that was replaced.
func TestRoundTrip(t *testing.T) {
	in := readExample(t)
	m, err := recording.Parse(bytes.NewReader(in))
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if _, err := m.WriteTo(&buf); err != nil {
		t.Fatal(err)
	}
	var a, b any
	if err := json.Unmarshal(in, &a); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(buf.Bytes(), &b); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(a, b) {
		t.Fatalf("unchanged rewrite differs:\n%s\nvs\n%s", in, buf.Bytes())
	}
	// The example is indented as the recorder does; an unchanged rewrite is
	// byte-identical.
	if !bytes.Equal(bytes.TrimSpace(in), bytes.TrimSpace(buf.Bytes())) {
		t.Errorf("unchanged rewrite is not byte-identical:\n%s", buf.Bytes())
	}
	// Member order is kept.
	if i, j := bytes.Index(buf.Bytes(), []byte(`"callerPhoneNumber"`)), bytes.Index(buf.Bytes(), []byte(`"eventHistory"`)); i < 0 || j < i {
		t.Errorf("member order changed")
	}

	f, _ := m.Media("")
	f.SetHeader([]byte{0x30, 0x03, 0x02, 0x01, 0x00})
	buf.Reset()
	if _, err := m.WriteTo(&buf); err != nil {
		t.Fatal(err)
	}
	m2, err := recording.Parse(bytes.NewReader(buf.Bytes()))
	if err != nil {
		t.Fatal(err)
	}
	f2, _ := m2.Media("")
	if der, err := f2.Header(); err != nil || !bytes.Equal(der, []byte{0x30, 0x03, 0x02, 0x01, 0x00}) {
		t.Fatalf("new header = %x, %v", der, err)
	}
	var c map[string]any
	json.Unmarshal(buf.Bytes(), &c)
	am := a.(map[string]any)
	am["mediaFiles"].([]any)[0].(map[string]any)["pkcs7"] = f2.PKCS7
	if !reflect.DeepEqual(am, c) {
		t.Errorf("rewrite changed more than pkcs7:\n%s", buf.Bytes())
	}
}

func TestUnknownNestedKept(t *testing.T) {
	in := `{"id":"r1","x":{"deep":[1,2.50,"\u00e9"]},"mediaFiles":[{"mediaId":"a","extra":true,"originalMediaDescriptor":{"storage":"webDAV","path":"/p","more":1e3}}],"z":null}`
	m, err := recording.Parse(strings.NewReader(in))
	if err != nil {
		t.Fatal(err)
	}
	m.MediaFiles[0].Path = "/q"
	out, err := m.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	var compact bytes.Buffer
	json.Compact(&compact, out)
	want := strings.Replace(in, `"/p"`, `"/q"`, 1)
	if compact.String() != want {
		t.Errorf("got  %s\nwant %s", compact.String(), want)
	}
}

func TestMediaSelection(t *testing.T) {
	two := `{"id":"r","mediaFiles":[{"mediaId":"a.mp3.bin"},{"mediaId":"b.mp4.bin"}]}`
	m, err := recording.Parse(strings.NewReader(two))
	if err != nil {
		t.Fatal(err)
	}
	_, err = m.Media("")
	if !errors.Is(err, recording.ErrNoMedia) || !strings.Contains(err.Error(), `"a.mp3.bin", "b.mp4.bin"`) {
		t.Errorf("Media(\"\") with two = %v", err)
	}
	_, err = m.Media("c")
	if !errors.Is(err, recording.ErrNoMedia) || !strings.Contains(err.Error(), `"c"`) || !strings.Contains(err.Error(), `"b.mp4.bin"`) {
		t.Errorf("Media(c) = %v", err)
	}
	if f, err := m.Media("b.mp4.bin"); err != nil || f.MediaID != "b.mp4.bin" {
		t.Errorf("Media(b) = %v, %v", f, err)
	}
	if _, err := m.MediaFiles[0].Header(); !errors.Is(err, recording.ErrNotEncrypted) {
		t.Errorf("Header without pkcs7 = %v", err)
	}
	m0, err := recording.Parse(strings.NewReader(`{"mediaFiles":[]}`))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := m0.Media(""); !errors.Is(err, recording.ErrNoMedia) {
		t.Errorf("Media on none = %v", err)
	}
}

func TestParseErrors(t *testing.T) {
	for _, tc := range []struct{ name, in, want string }{
		{"empty", "", "empty input"},
		{"not object", `[1]`, "not a JSON object"},
		{"syntax", `{"id":`, "unexpected end"},
		{"syntax offset", `{"id":"a",,}`, "at byte"},
		{"trailing", `{"mediaFiles":[]} {}`, "trailing data"},
		{"no mediaFiles", `{"id":"a"}`, `no "mediaFiles"`},
		{"mediaFiles not array", `{"mediaFiles":{}}`, "not an array"},
		{"id not string", `{"id":5,"mediaFiles":[]}`, `"id" is not a string`},
		{"entry not object", `{"mediaFiles":[1]}`, "mediaFiles[0] is not a JSON object"},
		{"pkcs7 not string", `{"mediaFiles":[{"pkcs7":{}}]}`, `mediaFiles[0]: "pkcs7" is not a string`},
		{"dup member", `{"mediaFiles":[],"mediaFiles":[]}`, `"mediaFiles" appears twice`},
		{"dup nested member", `{"mediaFiles":[{"pkcs7":"a","pkcs7":"b"}]}`, `"pkcs7" appears twice`},
		{"dup mediaId", `{"mediaFiles":[{"mediaId":"a"},{"mediaId":"a"}]}`, `mediaId "a" appears twice`},
		{"descriptor", `{"mediaFiles":[{"originalMediaDescriptor":"x"}]}`, "originalMediaDescriptor is not a JSON object"},
		{"path type", `{"mediaFiles":[{"originalMediaDescriptor":{"path":1}}]}`, `"path" is not a string`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := recording.Parse(strings.NewReader(tc.in))
			if !errors.Is(err, recording.ErrMalformed) || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Parse(%s) = %v, want ErrMalformed containing %q", tc.in, err, tc.want)
			}
		})
	}
}

func TestParseTooLarge(t *testing.T) {
	big := `{"mediaFiles":[],"pad":"` + strings.Repeat("a", recording.MaxMetadataSize) + `"}`
	if _, err := recording.Parse(strings.NewReader(big)); !errors.Is(err, recording.ErrTooLarge) {
		t.Errorf("Parse(>max) = %v", err)
	}
}

func TestHeaderForms(t *testing.T) {
	for _, tc := range []struct {
		name, pkcs7 string
		ok          bool
	}{
		{"pem", "-----BEGIN PKCS7-----\nMAMCAQA=\n-----END PKCS7-----\n", true},
		{"cms label", "-----BEGIN CMS-----\nMAMCAQA=\n-----END CMS-----", true},
		{"bare base64", "MAMC\nAQA=", true},
		{"other label", "-----BEGIN CERTIFICATE-----\nMAMCAQA=\n-----END CERTIFICATE-----\n", false},
		{"bad pem", "-----BEGIN PKCS7-----\n!!\n", false},
		{"two blocks", "-----BEGIN PKCS7-----\nMAMCAQA=\n-----END PKCS7-----\n-----BEGIN PKCS7-----\nMAMCAQA=\n-----END PKCS7-----\n", false},
		{"not base64", "@@@", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := &recording.MediaFile{MediaID: "m", PKCS7: tc.pkcs7}
			der, err := f.Header()
			if tc.ok {
				if err != nil || !bytes.Equal(der, []byte{0x30, 0x03, 0x02, 0x01, 0x00}) {
					t.Errorf("Header = %x, %v", der, err)
				}
			} else if !errors.Is(err, recording.ErrMalformed) {
				t.Errorf("Header = %x, %v; want ErrMalformed", der, err)
			}
		})
	}
}

func TestIsMetadata(t *testing.T) {
	for in, want := range map[string]bool{
		" \n{\"id\":1}":           true,
		"-----BEGIN PKCS7-----":   false,
		"\x30\x80":                false,
		"":                        false,
		"\t\r\n{":                 true,
		"MIIBzgYJKoZIhvcNAQcDoII": false,
	} {
		if got := recording.IsMetadata([]byte(in)); got != want {
			t.Errorf("IsMetadata(%q) = %v", in, got)
		}
	}
}
