//go:build !amd64 || purego

package aescbc

// Implementation names the code in use.
func Implementation() string { return "crypto/cipher" }

func expandKey(*Key, []byte) bool { return false }

func encryptBlocks(*Key, *[BlockSize]byte, []byte, []byte) { panic("aescbc: no assembly") }
func decryptBlocks(*Key, *[BlockSize]byte, []byte, []byte) { panic("aescbc: no assembly") }
