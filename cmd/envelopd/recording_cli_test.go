package main

import (
	"encoding/json"
	"os"
	"testing"
)

// writeRecordingJSON writes a recording.json whose media files carry the
// given PEM envelopes, keyed by mediaId, plus members envelopd does not know.
func writeRecordingJSON(t *testing.T, path, id string, media map[string]string) {
	t.Helper()
	var files []map[string]any
	for mid, pemText := range media {
		files = append(files, map[string]any{
			"mediaId": mid, "type": "audio/mp3", "tenant": "Environment", "accessgroups": []string{"/"},
			"mediaUri":                "https://storage.example/" + mid,
			"originalMediaDescriptor": map[string]string{"storage": "webDAV", "path": "/recordings/" + mid},
			"pkcs7":                   pemText,
		})
	}
	b, err := json.MarshalIndent(map[string]any{"id": id, "callerPhoneNumber": "+15550100", "mediaFiles": files,
		"eventHistory": []map[string]string{{"event": "START"}}}, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestDecryptHeaderRecordingJSON: decrypt -header takes a recording.json
// and picks the envelope of -media (optional with one media file).
func TestDecryptHeaderRecordingJSON(t *testing.T) {
	f := newCLIFixture(t)
	ksMust(t, "encrypt", "-cert", f.cert, "-in", f.plain, "-out", f.path("voice.bin"), "-header", f.path("voice.pem"))
	ksMust(t, "encrypt", "-cert", f.cert, "-in", f.cert, "-out", f.path("screen.bin"), "-header", f.path("screen.pem"))
	voice, _ := os.ReadFile(f.path("voice.pem"))
	screen, _ := os.ReadFile(f.path("screen.pem"))

	one := f.path("one.json")
	writeRecordingJSON(t, one, "r1", map[string]string{"r1_Voice_Rec.mp3.bin": string(voice)})
	ksMust(t, "decrypt", "-key", f.pkcs8, "-header", one, "-in", f.path("voice.bin"), "-out", f.path("o1"))
	assertSameFile(t, f.plain, f.path("o1"))
	ksMust(t, "decrypt", "-key", f.pkcs8, "-header", one, "-media", "r1_Voice_Rec.mp3.bin", "-in", f.path("voice.bin"), "-out", f.path("o2"))
	assertSameFile(t, f.plain, f.path("o2"))

	two := f.path("two.json")
	writeRecordingJSON(t, two, "r2", map[string]string{"r2_Voice_Rec.mp3.bin": string(voice), "r2_Screen_Rec.mp4.bin": string(screen)})
	ksMust(t, "decrypt", "-key", f.pkcs8, "-header", two, "-media", "r2_Screen_Rec.mp4.bin", "-in", f.path("screen.bin"), "-out", f.path("o3"))
	assertSameFile(t, f.cert, f.path("o3"))
	ksFail(t, `choose one: "r2_`, "decrypt", "-key", f.pkcs8, "-header", two, "-in", f.path("voice.bin"), "-out", f.path("o4"))
	ksFail(t, `"nope" is not among the media files`, "decrypt", "-key", f.pkcs8, "-header", two, "-media", "nope", "-in", f.path("voice.bin"), "-out", f.path("o4"))
	if _, err := os.Stat(f.path("o4")); err == nil {
		t.Error("a failed decrypt left an output file")
	}
	ksFail(t, "-media goes with a recording.json -header", "decrypt", "-key", f.pkcs8, "-header", f.path("voice.pem"), "-media", "x", "-in", f.path("voice.bin"))
	ksFail(t, "-media goes with -header", "decrypt", "-key", f.pkcs8, "-media", "x", "-in", f.path("voice.bin"))

	bad := f.path("bad.json")
	os.WriteFile(bad, []byte(`{"id":"r3","mediaFiles":[{"mediaId":"a"}]}`), 0o644)
	ksFail(t, "has no pkcs7 envelope", "decrypt", "-key", f.pkcs8, "-header", bad, "-in", f.path("voice.bin"))
	os.WriteFile(bad, []byte(`{"id":"r3",`), 0o644)
	ksFail(t, "malformed metadata", "decrypt", "-key", f.pkcs8, "-header", bad, "-in", f.path("voice.bin"))
}
