package daemon

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/envelopd/envelopd/internal/pki"
)

// A private key whose key derivation is costlier than an upload may ask
// for is answered 422 with its own code: as the upload handler reports it
// (newAPIError with the pki error as an argument) and as a plain wrapped
// error.
func TestKeyDerivationCostIs422(t *testing.T) {
	costErr := fmt.Errorf("%w: PBKDF2 iteration count 10000000 is above the limit of 1000000", pki.ErrKeyDerivationCost)
	for name, err := range map[string]error{
		"upload handler": newAPIError(http.StatusBadRequest, "bad_private_key", "%v", costErr),
		"wrapped":        fmt.Errorf("importing: %w", costErr),
	} {
		rec := httptest.NewRecorder()
		ae := writeError(rec, err)
		if ae.status != http.StatusUnprocessableEntity || rec.Code != http.StatusUnprocessableEntity {
			t.Errorf("%s: status %d (recorded %d), want 422", name, ae.status, rec.Code)
		}
		var body errorBody
		if err := json.Unmarshal(rec.Body.Bytes(), &body); err != nil || body.Error.Code != "key_derivation_cost" || body.Error.Message == "" {
			t.Errorf("%s: body %s (%v)", name, rec.Body.Bytes(), err)
		}
		if !errors.Is(ae, pki.ErrKeyDerivationCost) {
			t.Errorf("%s: the cause is lost", name)
		}
	}
	// Other private key errors keep their status.
	if ae := classify(newAPIError(http.StatusBadRequest, "bad_private_key", "%v", pki.ErrWrongPassword)); ae.status != http.StatusBadRequest {
		t.Errorf("wrong password: %d", ae.status)
	}
}
