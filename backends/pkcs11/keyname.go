//go:build cgo

package pkcs11

import (
	"encoding/hex"
	"strings"

	"github.com/envelopd/envelopd/backends"
)

var _ backends.KeyNamer = (*Backend)(nil)

// KeyName names the key ref refers to by the token (manufacturer, model
// and serial number, as the token reports them: the same token reached
// through two backend entries, by label or by serial, is one store), then
// the object's label and CKA_ID as the reference gives them. A bare label
// and pkcs11:object=label are one key; a reference by label and one by id
// are different names even when they find the same object (compare public
// keys for that). See backends.KeyNamer.
func (b *Backend) KeyName(ref string) (string, error) {
	kr, err := b.parseKeyRef(ref)
	if err != nil {
		return "", b.wrap("key", ref, err)
	}
	b.mu.Lock()
	tok := b.token
	b.mu.Unlock()
	store := strings.Join([]string{strings.TrimSpace(tok.ManufacturerID), strings.TrimSpace(tok.Model), strings.TrimSpace(tok.SerialNumber)}, "/")
	name := "object=" + kr.label
	if kr.hasID {
		name += ";id=" + hex.EncodeToString(kr.id)
	}
	return Type + ":" + store + "#" + name, nil
}
