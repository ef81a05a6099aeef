#!/bin/sh
# Seeds of FuzzReadJavaKeystore (password changeit). 1024-bit keys keep them small.
set -e
keytool -genkeypair -keyalg RSA -keysize 1024 -alias rec -dname CN=rec -validity 3650 -storetype JKS -keystore keytool.jks -storepass changeit -keypass changeit
keytool -importcert -noprompt -alias ca -file ../../../envelope/testdata/cert.pem -keystore keytool.jks -storepass changeit
keytool -genkeypair -keyalg RSA -keysize 1024 -alias rec -dname CN=rec -validity 3650 -storetype PKCS12 -keystore keytool.p12 -storepass changeit -keypass changeit
keytool -exportcert -rfc -alias rec -keystore keytool.p12 -storepass changeit > rec.pem
openssl pkcs12 -in keytool.p12 -nocerts -nodes -passin pass:changeit | openssl pkey > rec.key
# One PBKDF2 iteration: a cheap seed for the fuzzer.
openssl pkcs12 -export -inkey rec.key -in rec.pem -name rec -iter 1 -passout pass:changeit -out openssl-iter1.p12
rm rec.pem rec.key
