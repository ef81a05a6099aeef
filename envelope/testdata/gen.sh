#!/bin/sh
# Regenerates the seed corpus of FuzzReader/FuzzHeaderSplice: small
# envelopes made by openssl for the committed test key (key.pem, cert.pem).
# The test key protects nothing. Run from this directory:
#   sh gen.sh
set -eu
if [ ! -f key.pem ]; then
	openssl req -x509 -newkey rsa:2048 -nodes -keyout key.pem -out cert.pem \
		-subj "/O=envelopd tests/CN=fuzz seed" -days 36500 2>/dev/null
	openssl req -x509 -newkey rsa:2048 -nodes -keyout key2.pem -out cert2.pem \
		-subj "/O=envelopd tests/CN=fuzz seed 2" -days 36500 2>/dev/null
fi
printf 'a small recording, not really audio\n' > plain.txt
e() { out=$1; tool=$2; shift 2; openssl "$tool" -binary -in plain.txt -out "$out" "$@"; }
e smime-aes256.der smime -encrypt -aes256 -outform DER cert.pem
e smime-aes128.pem smime -encrypt -aes128 -outform PEM cert.pem
e cms-aes192.der cms -encrypt -aes192 -outform DER cert.pem
e cms-stream-aes256.ber cms -encrypt -aes256 -stream -outform DER cert.pem
e cms-stream-aes128.pem cms -encrypt -aes128 -stream -outform PEM cert.pem
e cms-keyid.der cms -encrypt -aes256 -keyid -outform DER cert.pem
e cms-oaep-sha1.der cms -encrypt -aes256 -outform DER -recip cert.pem -keyopt rsa_padding_mode:oaep
e cms-oaep-sha256.ber cms -encrypt -aes256 -stream -outform DER -recip cert.pem -keyopt rsa_padding_mode:oaep -keyopt rsa_oaep_md:sha256
e cms-two-recipients.der cms -encrypt -aes256 -outform DER cert2.pem cert.pem
e cms-gcm256.der cms -encrypt -aes-256-gcm -outform DER cert.pem
e cms-stream-gcm128.ber cms -encrypt -aes-128-gcm -stream -outform DER cert.pem
e cms-des3.der cms -encrypt -des3 -outform DER cert.pem
# A header-only envelope as recorders store it: the DER without its
# encryptedContent (openssl cannot write one; strip it from a DER file whose
# content is a single primitive [0]).
rm -f plain.txt
