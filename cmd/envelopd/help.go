package main

// What every command's help shows besides its flags: examples a user can
// paste, written with the same placeholders the flags use (FILE, SPEC,
// URI, N, ...: the list is in help_test.go, which holds every flag to it);
// and the defaults that several backends share.

import (
	"fmt"
	"io"
	"strconv"
)

// Defaults shared by every command that creates a key or a certificate, so
// that the file keystore, a PKCS#11 token, Vault Transit and AWS KMS give the
// same key size and validity unless told otherwise.
const (
	// defaultKeyBits is the RSA modulus size of a new key (-bits; the
	// awskms key spec RSA_3072). Every backend offers 2048, 3072 and 4096.
	defaultKeyBits = 3072
	// defaultCertDays is the validity in days of a certificate a command
	// issues (-days): 825 days, the longest lifetime public CAs have
	// granted leaf certificates, so a yearly rotation has overlap.
	defaultCertDays = 825
)

// defaultKMSKeySpec is defaultKeyBits as an AWS KMS key spec.
var defaultKMSKeySpec = "RSA_" + strconv.Itoa(defaultKeyBits)

// Values the examples share.
const (
	exKS     = "-keystore keys.envks -pass env:ENVELOPD_KEYSTORE_PASSWORD"
	exSocket = "-socket /run/envelopd/envelopd.sock"
	exVault  = "-address https://vault.example:8200 -token env:VAULT_TOKEN"
	exHSM    = "-module /usr/lib/softhsm/libsofthsm2.so -token recordings -pin env:ENVELOPD_PKCS11_PIN"
	exKMS    = "-region eu-west-1"
)

// examples are the command lines each command's help shows, by the
// command's name as its usage line gives it ("keystore create"). Each runs
// as written once the files it names exist (and the environment variables
// its secret references name are set). A command with subcommands shows the
// first example of each. TestHelpExamples parses every one of them.
var examples = map[string][]string{
	"encrypt": {
		"envelopd encrypt -cert tenant-a.crt -in call.wav -out call.wav.p7m",
		"envelopd encrypt -cert tenant-a.crt -cert escrow.crt -cipher aes256-gcm -oaep sha256 -in call.wav -out call.wav.p7m",
		"envelopd encrypt -cert tenant-a.crt -header call.wav.p7m.pem -in call.wav -out call.wav.bin",
		"envelopd encrypt " + exSocket + " -tenant acme -in call.wav -out call.wav.p7m",
	},
	"decrypt": {
		"envelopd decrypt -key tenant-a.key -in call.wav.p7m -out call.wav",
		"envelopd decrypt " + exKS + " -in call.wav.p7m -out call.wav",
		"envelopd decrypt " + exKS + " -header recording.json -in media.mp3.bin -out media.mp3",
		"envelopd decrypt " + exSocket + " -in call.wav.p7m -out call.wav",
	},
	"inspect": {
		"envelopd inspect -in call.wav.p7m",
		"envelopd inspect -json -in call.wav.p7m.pem",
	},
	"rewrap": {
		"envelopd rewrap -key old.key -cert new.crt -in call.wav.p7m -out call.wav.new.p7m",
		"envelopd rewrap " + exKS + " -cert new.crt -keep-old -in call.wav.p7m -out call.wav.new.p7m",
		"envelopd rewrap " + exSocket + " -tenant acme -in call.wav.p7m -out call.wav.new.p7m",
	},
	"serve": {
		"envelopd serve -check -config /etc/envelopd/envelopd.toml",
		"envelopd serve -config /etc/envelopd/envelopd.toml",
		"envelopd serve -dev",
	},
	"version": {"envelopd version"},

	"archive list": {
		"envelopd archive list recordings.zip",
		"envelopd archive list recordings.zip " + exKS + " -json",
	},
	"archive verify": {
		"envelopd archive verify recordings.zip " + exKS,
		"envelopd archive verify recordings.zip -key tenant-a.key -j 2 -json",
	},
	"archive decrypt": {
		"envelopd archive decrypt recordings.zip " + exKS + " -out recordings/",
		"envelopd archive decrypt recordings.zip -key tenant-a.key -out plain.zip -resume",
	},
	"archive rekey": {
		"envelopd archive rekey recordings.zip " + exKS + " -cert tenant-a-2027.crt -out rekeyed.zip",
		"envelopd archive rekey recordings.zip " + exSocket + " -tenant acme -keep-old -out rekeyed.zip",
	},

	"keystore create": {"envelopd keystore create " + exKS},
	"keystore import": {
		"envelopd keystore import " + exKS + " -alias tenant-a -key tenant-a.key -cert tenant-a.crt -chain ca.crt",
		"envelopd keystore import " + exKS + " -from old-recorder.jks -from-pass env:JKS_PASSWORD",
		"envelopd keystore import " + exKS + " -from tenant-a.p12 -from-pass file:/root/tenant-a.p12.pass -alias tenant-a",
	},
	"keystore generate": {
		`envelopd keystore generate ` + exKS + ` -alias rec-2026 -subject "CN=recordings 2026,O=Example" -csr rec-2026.csr`,
		`envelopd keystore generate ` + exKS + ` -alias rec-2026 -bits 4096 -days 365 -subject "CN=recordings 2026,O=Example"`,
	},
	"keystore set-certificate": {
		"envelopd keystore set-certificate " + exKS + " -alias rec-2026 -cert rec-2026.crt -chain ca.crt",
	},
	"keystore list": {
		"envelopd keystore list " + exKS,
		"envelopd keystore list " + exKS + " -json",
	},
	"keystore export-cert": {
		"envelopd keystore export-cert " + exKS + " -alias rec-2026 -out rec-2026.crt",
		"envelopd keystore export-cert " + exKS + " -alias rec-2026 -chain -out rec-2026-chain.pem",
	},
	"keystore export": {
		"envelopd keystore export " + exKS + " -alias rec-2026 -out rec-2026.p12 -out-pass env:BACKUP_PASSWORD",
	},
	"keystore retire": {"envelopd keystore retire " + exKS + " -alias rec-2025"},
	"keystore delete": {"envelopd keystore delete " + exKS + " -alias rec-2024 -force"},

	"pkcs11 list": {"envelopd pkcs11 list " + exHSM},
	"pkcs11 generate": {
		`envelopd pkcs11 generate ` + exHSM + ` -label tenant-a-2026 -subject "CN=tenant-a recordings,O=Example" -csr tenant-a-2026.csr -cert-out tenant-a-2026.crt`,
	},
	"pkcs11 import": {
		"envelopd pkcs11 import " + exHSM + " -label tenant-a -key tenant-a.key -cert tenant-a.crt",
		"envelopd pkcs11 import " + exHSM + " -label tenant-a-2026 -cert tenant-a-2026-signed.crt",
	},

	"transit generate": {
		"envelopd transit generate " + exVault + " -name tenant-a -out tenant-a.pub.pem",
	},
	"transit import": {
		"envelopd transit import " + exVault + " -name tenant-a -key tenant-a.key -chain tenant-a.crt",
	},
	"transit csr": {
		`envelopd transit csr ` + exVault + ` -name tenant-a -subject "CN=tenant-a recordings,O=Example" -out tenant-a.csr`,
	},
	"transit set-certificate": {
		"envelopd transit set-certificate " + exVault + " -name tenant-a@1 -chain tenant-a-chain.pem",
	},

	"awskms create": {
		"envelopd awskms create " + exKMS + " -alias tenant-a -out tenant-a.pub.pem",
	},
	"awskms describe": {
		"envelopd awskms describe " + exKMS + " -key alias/tenant-a",
	},
	"awskms certificate": {
		`envelopd awskms certificate ` + exKMS + ` -key alias/tenant-a -subject "CN=tenant-a recordings,O=Example" -ca-cert ca.crt -ca-key ca.key -ca-key-pass env:CA_KEY_PASSWORD -out tenant-a.crt`,
	},

	"registry migrate": {
		"envelopd registry migrate -from /var/lib/envelopd -to env:ENVELOPD_REGISTRY_URL",
		"envelopd registry migrate -from /var/lib/envelopd -to postgres://envelopd@localhost/envelopd",
	},
}

// printExamples writes the "Examples:" section of a command's help.
func printExamples(w io.Writer, lines []string) {
	if len(lines) == 0 {
		return
	}
	fmt.Fprintln(w, "\nExamples:")
	for _, l := range lines {
		fmt.Fprintln(w, "  "+l)
	}
}

// groupExamples is the first example of each of cmd's subcommands.
func groupExamples(cmd string, subs []subcommand) []string {
	var out []string
	for _, s := range subs {
		if ex := examples[cmd+" "+s.name]; len(ex) > 0 {
			out = append(out, ex[0])
		}
	}
	return out
}
