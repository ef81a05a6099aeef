package transit

import (
	"net"
	"net/url"
	"strings"

	"github.com/envelopd/envelopd/backends"
)

var _ backends.KeyNamer = (*Backend)(nil)

// KeyName names the key ref refers to by the Vault server (scheme, host and
// port of the address, lower case, default port filled in), the namespace
// and the mount, then the key name without a version: "transit:k",
// "k@3" and "transit:k?version=2" are one key. See backends.KeyNamer.
func (b *Backend) KeyName(ref string) (string, error) {
	kr, err := parseKeyRef(ref)
	if err != nil {
		return "", b.err("key", ref, err)
	}
	return Type + ":" + canonicalAddress(b.client.Address()) + "/" + strings.Trim(b.namespace, "/") + "/" + strings.Trim(b.mount, "/") + "#" + kr.name, nil
}

// canonicalAddress normalises a Vault address for comparison.
func canonicalAddress(addr string) string {
	u, err := url.Parse(addr)
	if err != nil || u.Host == "" {
		return strings.ToLower(strings.TrimRight(addr, "/"))
	}
	scheme := strings.ToLower(u.Scheme)
	host, port := strings.ToLower(u.Hostname()), u.Port()
	if port == "" {
		port = map[string]string{"http": "80", "https": "443"}[scheme]
	}
	return scheme + "://" + net.JoinHostPort(host, port) + strings.TrimRight(u.EscapedPath(), "/")
}
