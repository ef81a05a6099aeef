package pki

import (
	"crypto/x509/pkix"
	"encoding/asn1"
	"strings"
	"testing"
)

func TestParseDN(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		in   string
		want string // RFC 4514 form of the parsed name, most specific first
		cn   string
		err  string // part of the error; "" for success
	}{
		{in: "CN=a,O=b", want: "CN=a,O=b", cn: "a"},
		{in: "/O=b/CN=a", want: "CN=a,O=b", cn: "a"},
		{in: "tenant-a recordings", want: "CN=tenant-a recordings", cn: "tenant-a recordings"},
		{in: "  CN = spaced , O = Example  ", want: "CN=spaced,O=Example", cn: "spaced"},
		{in: "cn=lower,o=case,c=GB", want: "CN=lower,O=case,C=GB", cn: "lower"},
		{in: `CN=a\,b,O=c`, want: `CN=a\,b,O=c`, cn: "a,b"},
		{in: `/O=a\/b/CN=c`, want: "CN=c,O=a/b", cn: "c"},
		{in: "CN=x=y", want: "CN=x=y", cn: "x=y"},
		{in: "CN=Ünïcødé,O=Straße", want: "CN=Ünïcødé,O=Straße", cn: "Ünïcødé"},
		{in: "OU=one,OU=two,O=org", want: "OU=one,OU=two,O=org"},
		{in: "CN=a,L=Berlin,ST=BE,STREET=Main 1,POSTALCODE=10115,SERIALNUMBER=42", want: "CN=a,L=Berlin,ST=BE,STREET=Main 1,POSTALCODE=10115,SERIALNUMBER=42", cn: "a"},
		{in: "emailAddress=ops@example.com,DC=example,UID=u1", want: "1.2.840.113549.1.9.1=#0c0f" + hexASCII("ops@example.com") + ",0.9.2342.19200300.100.1.25=#1307" + hexASCII("example") + ",0.9.2342.19200300.100.1.1=#1302" + hexASCII("u1")},
		{in: "", err: "empty"},
		{in: "   ", err: "empty"},
		{in: "CN=", err: `"CN=" is not ATTRIBUTE=value`},
		{in: "=a", err: "is not ATTRIBUTE=value"},
		{in: "CN=a,,O=b", err: `"" is not ATTRIBUTE=value`},
		{in: "CN=a,O", err: `"O" is not ATTRIBUTE=value`},
		{in: "/=a", err: "is not ATTRIBUTE=value"},
		{in: "/O=a/", err: `"" is not ATTRIBUTE=value`},
		{in: "XX=a", err: `unknown attribute "XX"`},
		{in: "CN=\xff", err: "not valid UTF-8"},
	} {
		n, err := ParseDN(tc.in)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("ParseDN(%q) = %v, want an error with %q", tc.in, err, tc.err)
			}
			continue
		}
		if err != nil {
			t.Errorf("ParseDN(%q): %v", tc.in, err)
			continue
		}
		if got := n.String(); got != tc.want {
			t.Errorf("ParseDN(%q) = %s, want %s", tc.in, got, tc.want)
		}
		if tc.cn != "" && n.CommonName != tc.cn {
			t.Errorf("ParseDN(%q).CommonName = %q, want %q", tc.in, n.CommonName, tc.cn)
		}
		if _, err := asn1.Marshal(n.ToRDNSequence()); err != nil {
			t.Errorf("ParseDN(%q) does not encode: %v", tc.in, err)
		}
	}
}

func hexASCII(s string) string {
	const digits = "0123456789abcdef"
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		b.WriteByte(digits[s[i]>>4])
		b.WriteByte(digits[s[i]&15])
	}
	return b.String()
}

// TestParseDNOrder: both notations give the same DER, most general first.
func TestParseDNOrder(t *testing.T) {
	t.Parallel()
	a, err := ParseDN("CN=rec,OU=ops,O=Example,C=GB")
	if err != nil {
		t.Fatal(err)
	}
	b, err := ParseDN("/C=GB/O=Example/OU=ops/CN=rec")
	if err != nil {
		t.Fatal(err)
	}
	da, _ := asn1.Marshal(a.ToRDNSequence())
	db, _ := asn1.Marshal(b.ToRDNSequence())
	if string(da) != string(db) {
		t.Error("the two notations encode differently")
	}
	rdns := a.ToRDNSequence()
	if len(rdns) != 4 || !rdns[0][0].Type.Equal(asn1.ObjectIdentifier{2, 5, 4, 6}) || !rdns[3][0].Type.Equal(asn1.ObjectIdentifier{2, 5, 4, 3}) {
		t.Errorf("RDNs %v: want C first and CN last", rdns)
	}
}

// formatDN writes n's attributes in ParseDN's RFC form, escaping what
// ParseDN splits on.
func formatDN(atvs []pkix.AttributeTypeAndValue) string {
	names := map[string]string{}
	for k, oid := range dnAttrs {
		names[oid.String()] = k
	}
	parts := make([]string, len(atvs))
	for i, atv := range atvs {
		v := atv.Value.(string)
		v = strings.NewReplacer(`\`, `\\`, `,`, `\,`).Replace(v)
		parts[len(atvs)-1-i] = names[atv.Type.String()] + "=" + v
	}
	return strings.Join(parts, ",")
}

func FuzzParseDN(f *testing.F) {
	for _, s := range []string{"CN=a,O=b", "/O=b/CN=a", "bare name", `CN=a\,b`, `/O=a\/b/CN=c`, "cn=x=y", "emailAddress=a@b", "CN=,O=", "\\", "CN=Ünï"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		n, err := ParseDN(s)
		if err != nil {
			if strings.ContainsRune(err.Error(), '\n') {
				t.Errorf("multi-line error %q", err)
			}
			return
		}
		rdns := n.ToRDNSequence()
		if len(rdns) == 0 {
			t.Fatalf("ParseDN(%q) accepted an empty name", s)
		}
		if _, err := asn1.Marshal(rdns); err != nil {
			t.Fatalf("ParseDN(%q) gives a name that does not encode: %v", s, err)
		}
		if len(n.ExtraNames) == 0 {
			return // a bare common name
		}
		for _, atv := range n.ExtraNames {
			v := atv.Value.(string)
			if v == "" || strings.TrimSpace(v) != v {
				t.Fatalf("ParseDN(%q): value %q is empty or untrimmed", s, v)
			}
		}
		again, err := ParseDN(formatDN(n.ExtraNames))
		if err != nil {
			t.Fatalf("ParseDN(%q) = %s, which does not parse again (%q): %v", s, n, formatDN(n.ExtraNames), err)
		}
		a, _ := asn1.Marshal(rdns)
		b, _ := asn1.Marshal(again.ToRDNSequence())
		if string(a) != string(b) {
			t.Fatalf("ParseDN(%q) = %s, reparsed as %s", s, n, again)
		}
	})
}
