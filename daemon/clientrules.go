package daemon

import (
	"fmt"
	"strings"

	"github.com/envelopd/envelopd/daemon/config"
)

// clientRuleWarnings returns one message per [[clients]] rule that can never
// match. Rules are tried in configuration order and the first matching rule
// decides (authenticate). The configuration already refuses two rules with
// the same uid, gid, token or cert_subject string; what remains are
// cert_subject rules that differ only in spelling (case, spaces) from an
// earlier one, and full-subject rules whose common name an earlier CN-only
// rule (cert_subject without '=') already matches.
func clientRuleWarnings(cfg *config.Config) []string { return clientRuleWarningsOf(cfg.Clients) }

func clientRuleWarningsOf(clients []config.Client) []string {
	var out []string
	for j := range clients {
		c := &clients[j]
		if c.CertSubject == "" {
			continue
		}
		for i := range j {
			e := &clients[i]
			if e.CertSubject == "" || e.CertSubject == c.CertSubject {
				continue
			}
			if subjectShadows(e.CertSubject, c.CertSubject) {
				out = append(out, fmt.Sprintf("client %q can never match: every certificate its cert_subject %q matches is already matched by the earlier client %q (cert_subject %q), and the first matching rule decides; merge the two rules or remove one", c.Name, c.CertSubject, e.Name, e.CertSubject))
				break
			}
		}
	}
	return out
}

// subjectShadows reports whether every certificate that rule later matches
// is matched by rule earlier (see subjectMatches).
func subjectShadows(earlier, later string) bool {
	eFull, lFull := strings.Contains(earlier, "="), strings.Contains(later, "=")
	switch {
	case eFull && lFull:
		return normalizeDN(earlier) == normalizeDN(later)
	case !eFull && !lFull:
		return earlier == later
	case !eFull && lFull:
		return earlier == dnCommonName(later)
	}
	return false
}

// dnCommonName is the CN value of an RFC 4514 subject string, "" if none.
func dnCommonName(dn string) string {
	cn := ""
	for _, p := range strings.Split(dn, ",") {
		k, v, _ := strings.Cut(strings.TrimSpace(p), "=")
		if strings.EqualFold(strings.TrimSpace(k), "CN") {
			cn = strings.TrimSpace(v)
		}
	}
	return cn
}
