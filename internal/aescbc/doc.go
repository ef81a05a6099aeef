// Package aescbc is AES in CBC mode for bulk content, in assembly on amd64.
//
// The standard library has no CBC assembly on amd64: crypto/cipher calls
// the one-block routine once per block. Here a whole buffer is one call.
// Encryption, serial by nature (each block needs the ciphertext of the one
// before), is one loop with every round key in a register. Decryption,
// parallel by nature, interleaves 8 blocks with AES-NI, 16 with VAES on
// 256-bit registers (AVX2) and 32 with VAES on 512-bit registers
// (AVX-512), chosen once at start-up from the CPU's features
// (golang.org/x/sys/cpu and CPUID). Implementation names the one in use.
//
// Key expansion follows FIPS 197 in Go with SubWord computed by AESENCLAST,
// so that no step indexes a table with key material: like the standard
// library's AES-NI code, everything runs in constant time.
//
// On other architectures, on amd64 CPUs without AES-NI and AVX, and with
// the purego build tag, the package uses crypto/aes and crypto/cipher,
// with the same results.
//
// # Concurrency
//
// A Key is immutable and safe for concurrent use. The cipher.BlockMode
// values of NewCBCEncrypter and NewCBCDecrypter carry a chain value and
// are for one goroutine at a time.
//
// # Limitations
//
// Only CBC, without padding: callers add and check PKCS#7 padding. Keys
// are 128, 192 or 256 bits.
package aescbc
