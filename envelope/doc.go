// Package envelope is a streaming codec for CMS EnvelopedData (RFC 5652,
// PKCS#7 enveloped-data) and AuthEnvelopedData (RFC 5083/5084, AES-GCM).
//
// (The package documentation is completed with the implementation.)
package envelope
