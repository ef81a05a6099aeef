// Playback sessions: the tokens behind /v1/play/<token> and the bounded
// cache of unwrapped session keys.

package daemon

import (
	"container/list"
	"crypto/rand"
	"encoding/base64"
	"sync"
	"time"

	"github.com/envelopd/envelopd/daemon/config"
	"github.com/envelopd/envelopd/envelope"
	"github.com/envelopd/envelopd/storage"
)

// playSession is what a play token stands for: one recording of one
// tenant, for a short time, on behalf of the client that created it.
type playSession struct {
	token   string
	tenant  string
	client  string        // the creating client's rule name
	rule    config.Client // that rule as it was, to notice a reload changing it
	cfg     *config.Config
	store   string // storage name
	obj     storage.Object
	header  []byte // header-only envelope (raw layout); nil for a complete PKCS#7 media file
	recID   string
	keyID   string // the key that unwrapped, for audit lines
	ctype   string
	size    int64 // plaintext bytes
	etag    string
	expires time.Time
	staging string // where GCM ciphertext is staged
}

// cachedKey is an unwrapped session key and the open plaintext view of its
// recording. It is zeroed (and a staged GCM file closed) when it leaves the
// cache and no request uses it any more.
type cachedKey struct {
	token   string
	dk      *envelope.DataKey
	sk      *envelope.Seekable
	lastUse time.Time
	refs    int
	evicted bool
	elem    *list.Element
}

// playback holds the sessions and the key cache of a Server. Sessions
// outlive configuration reloads; their limits come from the configuration
// current when they are used.
type playback struct {
	mu       sync.Mutex
	sessions map[string]*playSession
	keys     map[string]*cachedKey
	lru      list.List // front = most recently used
	janitor  bool
	stop     chan struct{}    // closed by closeAll: the janitor ends
	now      func() time.Time // tests
}

func (p *playback) init() {
	if p.sessions == nil {
		p.sessions = map[string]*playSession{}
		p.keys = map[string]*cachedKey{}
		if p.now == nil {
			p.now = time.Now
		}
	}
}

// clock returns the current time (of the test clock, in tests).
func (p *playback) clock() time.Time {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.init()
	return p.now()
}

// newToken returns an unguessable token: 32 random bytes, base64url.
func newToken() string {
	var b [32]byte
	rand.Read(b[:])
	return base64.RawURLEncoding.EncodeToString(b[:])
}

// add stores a new session and its key; false when max sessions are alive.
func (p *playback) add(s *playSession, dk *envelope.DataKey, sk *envelope.Seekable, pc config.Playback) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.init()
	p.sweepLocked()
	if len(p.sessions) >= pc.MaxSessions {
		return false
	}
	p.sessions[s.token] = s
	p.putLocked(s.token, dk, sk, pc)
	p.startJanitorLocked(pc)
	return true
}

// adopt stores a session whose key is not unwrapped yet (a sealed token
// of another instance); false when max sessions are alive. A session that
// is there already stays.
func (p *playback) adopt(s *playSession, pc config.Playback) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.init()
	p.sweepLocked()
	if _, ok := p.sessions[s.token]; ok {
		return true
	}
	if len(p.sessions) >= pc.MaxSessions {
		return false
	}
	p.sessions[s.token] = s
	p.startJanitorLocked(pc)
	return true
}

// full reports whether max sessions are alive (after dropping expired ones).
func (p *playback) full(pc config.Playback) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.init()
	p.sweepLocked()
	return len(p.sessions) >= pc.MaxSessions
}

// session returns the live session of token, or nil.
func (p *playback) session(token string) *playSession {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.init()
	s := p.sessions[token]
	if s == nil {
		return nil
	}
	if !p.now().Before(s.expires) {
		p.dropLocked(s.token)
		return nil
	}
	return s
}

// key returns the cached key of token with a reference held (release it
// with done), or nil when it is not cached.
func (p *playback) key(token string, pc config.Playback) *cachedKey {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.init()
	k := p.keys[token]
	if k == nil {
		return nil
	}
	if p.now().Sub(k.lastUse) >= pc.KeyCacheLifetime.Duration {
		p.evictLocked(k)
		return nil
	}
	k.lastUse = p.now()
	k.refs++
	p.lru.MoveToFront(k.elem)
	return k
}

// put caches a key unwrapped again for a session and returns it with a
// reference held.
func (p *playback) put(token string, dk *envelope.DataKey, sk *envelope.Seekable, pc config.Playback) *cachedKey {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.init()
	k := p.putLocked(token, dk, sk, pc)
	k.refs++
	return k
}

func (p *playback) putLocked(token string, dk *envelope.DataKey, sk *envelope.Seekable, pc config.Playback) *cachedKey {
	if old := p.keys[token]; old != nil {
		p.evictLocked(old)
	}
	k := &cachedKey{token: token, dk: dk, sk: sk, lastUse: p.now()}
	k.elem = p.lru.PushFront(k)
	p.keys[token] = k
	for p.lru.Len() > pc.KeyCacheSize {
		p.evictLocked(p.lru.Back().Value.(*cachedKey))
	}
	return k
}

// done releases a reference taken by key or put.
func (p *playback) done(k *cachedKey) {
	p.mu.Lock()
	defer p.mu.Unlock()
	k.refs--
	if k.evicted && k.refs == 0 {
		k.zero()
	}
}

func (p *playback) evictLocked(k *cachedKey) {
	if k.evicted {
		return
	}
	k.evicted = true
	p.lru.Remove(k.elem)
	if p.keys[k.token] == k {
		delete(p.keys, k.token)
	}
	if k.refs == 0 {
		k.zero()
	}
}

// zero wipes the key and releases the staged GCM ciphertext. (The AES key
// schedule inside crypto/aes cannot be wiped; it is garbage from now on.)
func (k *cachedKey) zero() {
	clear(k.dk.Key)
	if k.sk != nil {
		k.sk.Close()
	}
}

func (p *playback) dropLocked(token string) {
	delete(p.sessions, token)
	if k := p.keys[token]; k != nil {
		p.evictLocked(k)
	}
}

// sweepLocked drops expired sessions and keys idle for longer than their
// lifetime.
func (p *playback) sweepLocked() {
	now := p.now()
	for t, s := range p.sessions {
		if !now.Before(s.expires) {
			p.dropLocked(t)
		}
	}
}

func (p *playback) sweepKeysLocked(lifetime time.Duration) {
	now := p.now()
	for e := p.lru.Back(); e != nil; {
		k := e.Value.(*cachedKey)
		prev := e.Prev()
		if now.Sub(k.lastUse) >= lifetime {
			p.evictLocked(k)
		}
		e = prev
	}
}

// startJanitorLocked starts a goroutine that wipes expired keys and
// sessions while there are any, so that a key does not linger in memory
// until the next request.
func (p *playback) startJanitorLocked(pc config.Playback) {
	if p.janitor {
		return
	}
	p.janitor = true
	every := min(pc.KeyCacheLifetime.Duration, pc.TokenLifetime.Duration) / 4
	every = max(every, 100*time.Millisecond)
	if p.stop == nil {
		p.stop = make(chan struct{})
	}
	stop := p.stop
	go func() {
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			select {
			case <-stop:
				return
			case <-t.C:
			}
			p.mu.Lock()
			p.sweepLocked()
			p.sweepKeysLocked(pc.KeyCacheLifetime.Duration)
			if len(p.sessions) == 0 && len(p.keys) == 0 {
				p.janitor = false
				p.mu.Unlock()
				return
			}
			p.mu.Unlock()
		}
	}()
}

// closeAll ends every session and zeroes every key (at shutdown); the
// janitor stops at its next tick.
func (p *playback) closeAll() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.init()
	for t := range p.sessions {
		p.dropLocked(t)
	}
	for _, k := range p.keys {
		p.evictLocked(k)
	}
	if p.stop != nil {
		close(p.stop)
		p.stop = nil
		p.janitor = false
	}
}

// counts returns the live sessions and cached keys (tests, metrics).
func (p *playback) counts() (sessions, keys int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.sessions), len(p.keys)
}
