package envelope

import (
	"fmt"
	"strings"
)

// ParseCipher parses a cipher name as the CLI and HTTP API take it:
// "aes128", "aes192", "aes256" (CBC), "aes128-gcm", "aes256-gcm", or the
// names Cipher.String returns ("aes-256-cbc", ...). The empty string is
// DefaultCipher.
func ParseCipher(name string) (Cipher, error) {
	switch strings.ToLower(strings.TrimSpace(name)) {
	case "":
		return DefaultCipher, nil
	case "aes128", "aes-128-cbc", "aes128-cbc":
		return AES128CBC, nil
	case "aes192", "aes-192-cbc", "aes192-cbc":
		return AES192CBC, nil
	case "aes256", "aes-256-cbc", "aes256-cbc":
		return AES256CBC, nil
	case "aes128-gcm", "aes-128-gcm":
		return AES128GCM, nil
	case "aes256-gcm", "aes-256-gcm":
		return AES256GCM, nil
	}
	return 0, fmt.Errorf("%w: cipher %q (use aes128, aes192, aes256, aes128-gcm or aes256-gcm)", ErrUnsupported, name)
}
