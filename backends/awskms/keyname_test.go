package awskms

import (
	"context"
	"github.com/envelopd/envelopd/backends"
	"testing"
)

// TestKeyName: a KMS key by id and by ARN is one key; an alias by name and
// by ARN is one alias. KeyName makes no call to KMS.
func TestKeyName(t *testing.T) {
	b, err := Open(context.Background(), backends.Instance{Name: "kms"}, Options{Region: "eu-west-1", Endpoint: "http://127.0.0.1:1"})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	name := func(ref string) string {
		t.Helper()
		n, err := b.KeyName(ref)
		if err != nil {
			t.Fatalf("KeyName(%q): %v", ref, err)
		}
		return n
	}
	const id = "1234abcd-12ab-34cd-56ef-1234567890ab"
	key := name(id)
	for _, ref := range []string{"awskms:" + id, "arn:aws:kms:eu-west-1:111122223333:key/" + id, "awskms:arn:aws:kms:eu-west-1:111122223333:key/1234ABCD-12ab-34cd-56ef-1234567890ab"} {
		if got := name(ref); got != key {
			t.Errorf("KeyName(%q) = %q, want %q", ref, got, key)
		}
	}
	alias := name("alias/recordings")
	if got := name("arn:aws:kms:eu-west-1:111122223333:alias/recordings"); got != alias {
		t.Errorf("alias ARN = %q, want %q", got, alias)
	}
	for _, other := range []string{name("alias/other"), name("arn:aws:kms:us-east-1:111122223333:key/" + id), alias} {
		if other == key {
			t.Errorf("%q names the same key as %q", other, key)
		}
	}
}
