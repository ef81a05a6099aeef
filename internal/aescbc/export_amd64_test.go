//go:build amd64 && !purego

package aescbc

// widths lists the implementations this CPU can run, narrowest first.
func widths() []int {
	var ws []int
	for _, w := range []int{width0, width128, width256, width512} {
		if w <= maxWidth {
			ws = append(ws, w)
		}
	}
	return ws
}

// useWidth switches the implementation (keys made before keep theirs for
// key expansion, so tests make keys after switching).
func useWidth(w int) (restore func()) {
	old := width
	width = w
	return func() { width = old }
}
