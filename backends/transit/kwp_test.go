package transit

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"io/fs"
	"testing"

	"github.com/c2sp/wycheproof"
)

// TestKWPWycheproof runs Wycheproof's AES-KWP vectors (aes_kwp_test.json)
// against kwpWrap and kwpUnwrap.
func TestKWPWycheproof(t *testing.T) {
	data, err := fs.ReadFile(wycheproof.TestVectors, "aes_kwp_test.json")
	if err != nil {
		t.Fatal(err)
	}
	var file struct {
		TestGroups []struct {
			KeySize int `json:"keySize"`
			Tests   []struct {
				TcID    int      `json:"tcId"`
				Comment string   `json:"comment"`
				Key     string   `json:"key"`
				Msg     string   `json:"msg"`
				Ct      string   `json:"ct"`
				Result  string   `json:"result"`
				Flags   []string `json:"flags"`
			} `json:"tests"`
		} `json:"testGroups"`
	}
	if err := json.Unmarshal(data, &file); err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, g := range file.TestGroups {
		for _, tc := range g.Tests {
			n++
			key, _ := hex.DecodeString(tc.Key)
			msg, _ := hex.DecodeString(tc.Msg)
			ct, _ := hex.DecodeString(tc.Ct)
			got, err := kwpUnwrap(key, ct)
			switch tc.Result {
			case "valid":
				if err != nil || !bytes.Equal(got, msg) {
					t.Errorf("tc %d (%s): unwrap = %x, %v; want %x", tc.TcID, tc.Comment, got, err, msg)
				}
				w, err := kwpWrap(key, msg)
				if err != nil || !bytes.Equal(w, ct) {
					t.Errorf("tc %d (%s): wrap = %x, %v; want %x", tc.TcID, tc.Comment, w, err, ct)
				}
			case "invalid":
				if err == nil {
					t.Errorf("tc %d (%s): invalid ciphertext unwrapped to %x", tc.TcID, tc.Comment, got)
				}
			default: // acceptable
				if err == nil && !bytes.Equal(got, msg) {
					t.Errorf("tc %d (%s): unwrap = %x; want %x or an error", tc.TcID, tc.Comment, got, msg)
				}
			}
		}
	}
	if n < 200 {
		t.Fatalf("only %d vectors", n)
	}
}

func TestKWPRoundTrip(t *testing.T) {
	kek := bytes.Repeat([]byte{7}, 32)
	for l := 1; l <= 41; l++ {
		msg := bytes.Repeat([]byte{byte(l)}, l)
		ct, err := kwpWrap(kek, msg)
		if err != nil {
			t.Fatal(err)
		}
		if len(ct) != 8+(l+7)/8*8 {
			t.Fatalf("len %d: ciphertext %d bytes", l, len(ct))
		}
		got, err := kwpUnwrap(kek, ct)
		if err != nil || !bytes.Equal(got, msg) {
			t.Fatalf("len %d: %x %v", l, got, err)
		}
		ct[len(ct)-1] ^= 1
		if _, err := kwpUnwrap(kek, ct); err != errKWP {
			t.Fatalf("len %d: tampered: %v", l, err)
		}
	}
	if _, err := kwpWrap(kek, nil); err == nil {
		t.Fatal("empty plaintext wrapped")
	}
}

func FuzzKWPUnwrap(f *testing.F) {
	kek := bytes.Repeat([]byte{1}, 16)
	ct, _ := kwpWrap(kek, []byte("hello, world"))
	f.Add(ct)
	f.Add(make([]byte, 16))
	f.Fuzz(func(t *testing.T, ct []byte) {
		pt, err := kwpUnwrap(kek, ct)
		if err != nil {
			return
		}
		back, err := kwpWrap(kek, pt)
		if err != nil || !bytes.Equal(back, ct) {
			t.Fatalf("unwrap/wrap mismatch")
		}
	})
}
