package daemon

import (
	"strings"
	"testing"

	"github.com/envelopd/envelopd/daemon/config"
)

func TestClientRuleWarnings(t *testing.T) {
	cases := []struct {
		subjects []string
		warn     string // the client named in the one warning; "" = none
	}{
		{[]string{"player", "CN=player,O=Example"}, "c1"},
		{[]string{"CN=player,O=Example", "cn=player, o=Example"}, "c1"},
		{[]string{"CN=player,O=Example", "player"}, ""}, // the CN-only rule still matches other subjects
		{[]string{"player", "CN=other,O=Example"}, ""},
		{[]string{"CN=a,O=X", "CN=a,O=Y"}, ""},
	}
	for _, tc := range cases {
		var cl []config.Client
		for i, s := range tc.subjects {
			cl = append(cl, config.Client{Name: "c" + string(rune('0'+i)), CertSubject: s})
		}
		w := clientRuleWarningsOf(cl)
		if tc.warn == "" {
			if len(w) != 0 {
				t.Errorf("%q: unexpected warnings %q", tc.subjects, w)
			}
			continue
		}
		if len(w) != 1 || !strings.Contains(w[0], `client "`+tc.warn+`" can never match`) {
			t.Errorf("%q: warnings %q, want one about %s", tc.subjects, w, tc.warn)
		}
	}
}
