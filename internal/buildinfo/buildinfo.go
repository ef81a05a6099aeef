// Package buildinfo reports what a binary was built from: the module
// version, the VCS revision (with "+dirty" for a modified work tree) and the
// Go version, from runtime/debug.ReadBuildInfo. "go build ./cmd/envelopd"
// in a git checkout records the revision; "go install module@version"
// records the version. What the build did not record is "unknown".
//
// Safe for concurrent use; the answer is computed once.
package buildinfo

import (
	"runtime"
	"runtime/debug"
	"sync"
)

// Info is what the binary was built from.
type Info struct {
	Version   string // module version, e.g. "v1.2.0" or "(devel)"
	Revision  string // VCS revision, "+dirty" appended when modified
	Time      string // VCS commit time (RFC 3339), or ""
	GoVersion string // e.g. "go1.26.8"
}

// Get returns the build information of the running binary.
var Get = sync.OnceValue(func() Info {
	bi, ok := debug.ReadBuildInfo()
	return fromBuildInfo(bi, ok)
})

func fromBuildInfo(bi *debug.BuildInfo, ok bool) Info {
	in := Info{Version: "unknown", Revision: "unknown", GoVersion: runtime.Version()}
	if !ok || bi == nil {
		return in
	}
	if v := bi.Main.Version; v != "" {
		in.Version = v
	}
	if bi.GoVersion != "" {
		in.GoVersion = bi.GoVersion
	}
	dirty := false
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			in.Revision = s.Value
		case "vcs.time":
			in.Time = s.Value
		case "vcs.modified":
			dirty = s.Value == "true"
		}
	}
	if dirty && in.Revision != "unknown" {
		in.Revision += "+dirty"
	}
	return in
}
