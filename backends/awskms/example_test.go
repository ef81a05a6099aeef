package awskms_test

import (
	"context"
	"fmt"

	"github.com/envelopd/envelopd/backends"
	"github.com/envelopd/envelopd/backends/awskms"
)

// A KMS key can only be an OAEP recipient: the configuration check says so.
func ExampleBackend_ExplainPadding() {
	b, err := awskms.Open(context.Background(), backends.Instance{Name: "kms"}, awskms.Options{Region: "eu-west-1"})
	if err != nil {
		panic(err)
	}
	defer b.Close()
	fmt.Println(backends.CheckPadding(b, backends.OAEPSHA256) == nil)
	fmt.Println(backends.CheckPadding(b, backends.PKCS1v15) != nil)
	// Output:
	// true
	// true
}
