package envelope

import (
	"fmt"
	"sync/atomic"
)

// Budget bounds the memory that streams hold ahead of their consumer: the
// chunks a CBC reader reads and decrypts before they are asked for, and
// the chunks a writer encrypts and writes while its caller fills the next
// one. It is shared: one Budget for all the streams of a daemon bounds
// their read-ahead together, whatever their number.
//
// Every stream always has one chunk of its own (ChunkSize bytes), so it
// makes progress without the budget; each further chunk in flight takes
// ChunkSize from the budget, or is not started while the budget is spent.
// A stream without read-ahead works synchronously (read, decrypt, hand
// over; or fill, encrypt, write), which costs a single stream its overlap
// of I/O and AES but not the progress of the others. A stream never holds
// more than MaxAhead chunks of the budget.
//
// The memory of n concurrent streams is thus at most n×ChunkSize plus the
// budget's limit. A Budget is safe for concurrent use.
type Budget struct {
	limit atomic.Int64
	used  atomic.Int64
}

const (
	// ChunkSize is the unit in which streams read, encrypt, decrypt and
	// write, and in which they take from a Budget.
	ChunkSize = chunkSize
	// MaxAhead is the most chunks one stream takes from its Budget.
	MaxAhead = 8
)

// NewBudget returns a budget of limit bytes for the read-ahead of the
// streams that share it. A limit below ChunkSize allows no read-ahead at
// all; MaxAhead×ChunkSize (2 MiB) gives one stream its full speed.
func NewBudget(limit int64) *Budget {
	b := &Budget{}
	b.limit.Store(max(limit, 0))
	return b
}

// SetLimit changes the budget's size. Chunks already taken stay taken: a
// smaller limit holds new read-ahead back until enough of them are given
// back. (A daemon keeps one Budget across configuration reloads this way,
// instead of holding two while streams of the old configuration finish.)
func (b *Budget) SetLimit(limit int64) { b.limit.Store(max(limit, 0)) }

// DefaultBudget is the budget of streams that name none (16 MiB).
var DefaultBudget = NewBudget(16 << 20)

// Limit returns the budget's size in bytes.
func (b *Budget) Limit() int64 { return b.limit.Load() }

// InUse returns the bytes currently taken from the budget.
func (b *Budget) InUse() int64 { return b.used.Load() }

func (b *Budget) String() string {
	return fmt.Sprintf("%d of %d bytes in use", b.InUse(), b.Limit())
}

// take takes one chunk from the budget if it has room.
func (b *Budget) take() bool {
	for {
		u := b.used.Load()
		if u+chunkSize > b.limit.Load() {
			return false
		}
		if b.used.CompareAndSwap(u, u+chunkSize) {
			return true
		}
	}
}

// give returns n chunks to the budget.
func (b *Budget) give(n int) {
	if n > 0 {
		b.used.Add(-int64(n) * chunkSize)
	}
}

func budgetOr(b *Budget) *Budget {
	if b == nil {
		return DefaultBudget
	}
	return b
}
