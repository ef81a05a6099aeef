package config

import (
	"strings"
	"testing"
)

// TestReadAheadBytes: [limits] read_ahead_bytes defaults to 16 MiB, takes
// any byte count from 0 (no read-ahead: streams work synchronously) up,
// and refuses a negative one.
func TestReadAheadBytes(t *testing.T) {
	c, err := parse(t, base)
	if err != nil {
		t.Fatal(err)
	}
	if c.Limits.ReadAheadBytes != 16<<20 || DefaultReadAheadBytes != 16<<20 {
		t.Errorf("default read_ahead_bytes = %d", c.Limits.ReadAheadBytes)
	}
	for _, v := range []int64{0, 1 << 20, 256 << 20} {
		c, err := parse(t, base+"\n[limits]\nread_ahead_bytes = "+itoa(v)+"\n")
		if err != nil {
			t.Fatalf("read_ahead_bytes = %d: %v", v, err)
		}
		if c.Limits.ReadAheadBytes != v {
			t.Errorf("read_ahead_bytes = %d parsed as %d", v, c.Limits.ReadAheadBytes)
		}
	}
	_, err = parse(t, base+"\n[limits]\nread_ahead_bytes = -1\n")
	if err == nil || !strings.Contains(err.Error(), "limits.read_ahead_bytes: must not be negative") {
		t.Fatalf("negative read_ahead_bytes: %v", err)
	}
}

func itoa(v int64) string {
	var b []byte
	if v == 0 {
		return "0"
	}
	for ; v > 0; v /= 10 {
		b = append([]byte{byte('0' + v%10)}, b...)
	}
	return string(b)
}
