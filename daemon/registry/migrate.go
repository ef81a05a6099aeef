package registry

import (
	"context"
	"errors"
	"fmt"
)

// MigrateResult counts what [Migrate] did.
type MigrateResult struct {
	Copied, Present int
}

// Migrate copies every record of from into to. It is idempotent: a record
// already in to with the same data counts as present; one that differs
// (the same tenant and id, other data) stops the migration with an error
// naming it, as does a key name owned by another tenant in to. Records are
// written one by one, each in its own transaction: a migration stopped
// half-way is completed by running it again.
func Migrate(ctx context.Context, from, to Registry) (MigrateResult, error) {
	var res MigrateResult
	src, err := from.Load(ctx)
	if err != nil {
		return res, err
	}
	dst, err := to.Load(ctx)
	if err != nil {
		return res, err
	}
	have := map[[2]string]*Record{}
	for _, r := range dst {
		have[[2]string{r.Tenant, r.ID}] = r
	}
	for _, r := range src {
		if o, ok := have[[2]string{r.Tenant, r.ID}]; ok {
			if !o.Equal(r) {
				return res, fmt.Errorf("tenant %q certificate %q is in the target already with other data; remove one of them and run again", r.Tenant, r.ID)
			}
			res.Present++
			continue
		}
		if err := to.Put(ctx, r); err != nil {
			if errors.Is(err, ErrKeyOwned) {
				return res, fmt.Errorf("tenant %q certificate %q: its backend key %s belongs to another tenant in the target", r.Tenant, r.ID, r.KeyName)
			}
			return res, fmt.Errorf("tenant %q certificate %q: %w", r.Tenant, r.ID, err)
		}
		res.Copied++
	}
	return res, nil
}
