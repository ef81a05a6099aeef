// Recording storage for playback: the stores of a generation, built from
// [storage.NAME], and how storage errors become HTTP statuses.

package daemon

import (
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"slices"

	"github.com/envelopd/envelopd/daemon/config"
	"github.com/envelopd/envelopd/storage"
)

// openStores builds the stores of cfg. Nothing is contacted; passwords are
// resolved and CA files read now, so that a bad one fails the load.
func openStores(cfg *config.Config) (map[string]storage.Store, error) {
	stores := map[string]storage.Store{}
	for _, name := range slices.Sorted(maps.Keys(cfg.Storage)) {
		sc := cfg.Storage[name]
		var (
			st  storage.Store
			err error
		)
		switch sc.Type {
		case config.StorageWebDAV:
			st, err = storage.NewWebDAV(storage.WebDAVOptions{
				Name: name, URL: sc.URL, Username: sc.Username, Password: sc.Password,
				CA: sc.CA, Timeout: sc.Timeout.Duration,
			})
		case config.StorageFile:
			st, err = storage.NewFile(name, sc.Root)
		default:
			err = fmt.Errorf("unknown type %q", sc.Type)
		}
		if err != nil {
			closeStores(stores)
			return nil, fmt.Errorf("storage %q: %w", name, err)
		}
		stores[name] = st
	}
	return stores, nil
}

func closeStores(stores map[string]storage.Store) {
	for _, st := range stores {
		if c, ok := st.(io.Closer); ok {
			c.Close()
		}
	}
}

// classifyStorage maps a storage error to its external form, or returns
// nil. Messages name the path and the store, never credentials (package
// storage keeps them out of its errors).
func classifyStorage(err error) *apiError {
	var se *storage.Error
	if !errors.As(err, &se) {
		return nil
	}
	ae := &apiError{err: err}
	switch {
	case errors.Is(err, storage.ErrBadPath):
		ae.status, ae.code, ae.message = http.StatusBadRequest, "bad_path", "bad storage path: "+se.Detail
	case errors.Is(err, storage.ErrNotFound):
		ae.status, ae.code, ae.message = http.StatusNotFound, "storage_not_found", fmt.Sprintf("no file %q in storage %q", se.Path, se.Store)
	case errors.Is(err, storage.ErrRefused):
		ae.status, ae.code, ae.message = http.StatusBadGateway, "storage_refused", fmt.Sprintf("storage %q refused access (HTTP %d): check its username and password in the configuration", se.Store, se.Status)
		if se.Status == 0 {
			ae.message = fmt.Sprintf("storage %q refused access: check the daemon's permissions on the file", se.Store)
		}
	case errors.Is(err, storage.ErrChanged):
		ae.status, ae.code, ae.message = http.StatusConflict, "storage_changed", fmt.Sprintf("file %q changed in storage since the playback session was created: create a new session", se.Path)
	case errors.Is(err, storage.ErrUnavailable):
		ae.status, ae.code, ae.message = http.StatusServiceUnavailable, "storage_unavailable", fmt.Sprintf("storage %q is unavailable", se.Store)
	default:
		ae.status, ae.code, ae.message = http.StatusBadGateway, "storage_error", fmt.Sprintf("storage %q answered something unexpected", se.Store)
	}
	return ae
}
