package envelope

import "testing"

func TestParseCipher(t *testing.T) {
	for _, c := range []Cipher{AES128CBC, AES192CBC, AES256CBC, AES128GCM, AES256GCM} {
		got, err := ParseCipher(c.String())
		if err != nil || got != c {
			t.Errorf("ParseCipher(%q) = %v, %v", c, got, err)
		}
	}
	for name, want := range map[string]Cipher{"": AES256CBC, "aes128": AES128CBC, "AES256-GCM": AES256GCM} {
		if got, err := ParseCipher(name); err != nil || got != want {
			t.Errorf("ParseCipher(%q) = %v, %v", name, got, err)
		}
	}
	if _, err := ParseCipher("des3"); err == nil {
		t.Error("des3 accepted")
	}
}
