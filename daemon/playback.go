// Playback: POST /v1/tenants/{t}/playback creates a session for one
// recording in the tenant's storage and answers a play URL; GET and HEAD
// /v1/play/<token> serve its plaintext with byte ranges, so that a
// browser's <audio>/<video> plays and seeks it without holding a key or a
// credential.
//
// The session key is unwrapped once, at creation, and cached (bounded,
// zeroed on eviction); a range costs a ranged read of the ciphertext
// blocks under it. AES-GCM recordings are staged and verified at creation
// (see envelope.Seekable): no unverified GCM plaintext is served.

package daemon

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/envelopd/envelopd/daemon/config"
	"github.com/envelopd/envelopd/envelope"
	"github.com/envelopd/envelopd/recording"
	"github.com/envelopd/envelopd/storage"
)

// permCapability marks a route whose request carries its own capability
// (a play token): no client rule is needed to reach the handler, which
// checks the token.
const permCapability = "capability"

// playbackRequest is the body of POST /v1/tenants/{t}/playback.
type playbackRequest struct {
	Media       string `json:"media"`
	Envelope    string `json:"envelope"`
	ContentType string `json:"content_type"`
	RecordingID string `json:"recording_id"`
	Metadata    string `json:"metadata"`
	MediaID     string `json:"media_id"`
}

type playbackResponse struct {
	URL         string `json:"url"`
	ExpiresAt   string `json:"expires_at"`
	Size        int64  `json:"size"`
	ContentType string `json:"content_type"`
}

func errNoStorage(t string) error {
	return newAPIError(http.StatusConflict, "no_storage", "tenant %q has no recording storage: set storage = \"NAME\" in its [[tenants]] entry", t)
}

func errTooManySessions(pc config.Playback) error {
	return newAPIError(http.StatusServiceUnavailable, "too_many_sessions", "too many playback sessions (playback.max_sessions = %d); retry later", pc.MaxSessions)
}

// handlePlaybackCreate opens a recording in the tenant's storage, unwraps
// its key (audited), and answers a play URL.
func (s *Server) handlePlaybackCreate(c *call) error {
	t, err := c.tenantOf()
	if err != nil {
		return err
	}
	var req playbackRequest
	if err := c.readJSON(&req, false); err != nil {
		return err
	}
	tc := c.rt.cfg.Tenant(t.name)
	if tc == nil || tc.Storage == "" {
		return errNoStorage(t.name)
	}
	st := c.rt.stores[tc.Storage]
	pc := c.rt.cfg.Playback
	if s.play.full(pc) {
		return errTooManySessions(pc)
	}
	ctx := c.r.Context()
	sess := &playSession{tenant: t.name, client: c.id.name, rule: *c.id.client, cfg: c.rt.cfg, store: tc.Storage, recID: c.recID}
	if req.RecordingID != "" {
		sess.recID = sanitizeRecordingID(req.RecordingID)
	}
	var mediaPath string
	switch {
	case req.Media != "" && req.Metadata != "":
		return newAPIError(http.StatusBadRequest, "bad_request", "give either media (with envelope and content_type) or metadata (with media_id), not both")
	case req.Media != "":
		if req.MediaID != "" {
			return newAPIError(http.StatusBadRequest, "bad_request", "media_id goes with metadata, not with media")
		}
		mediaPath, sess.ctype = req.Media, req.ContentType
		if req.Envelope != "" {
			if sess.header, err = decodeEnvelopeText(req.Envelope, c.rt.cfg.Limits.MaxEnvelopeBytes); err != nil {
				return err
			}
		}
	case req.Metadata != "":
		if req.Envelope != "" || req.ContentType != "" {
			return newAPIError(http.StatusBadRequest, "bad_request", "with metadata, the envelope and content type come from the metadata: omit envelope and content_type")
		}
		mf, id, err := readMetadata(ctx, st, req.Metadata, req.MediaID)
		if err != nil {
			return err
		}
		if req.RecordingID == "" && id != "" {
			sess.recID = sanitizeRecordingID(id)
		}
		mediaPath, sess.ctype = mf.Path, mf.Type
		if mf.PKCS7 != "" {
			if sess.header, err = mf.Header(); err != nil {
				return newAPIError(http.StatusBadRequest, "bad_metadata", "media file %q: %v", mf.MediaID, err)
			}
		}
	default:
		return newAPIError(http.StatusBadRequest, "bad_request", "give media (a path in the tenant's storage) or metadata (the path of a recording.json)")
	}
	c.recID = sess.recID
	sess.ctype = mediaType(sess.ctype)
	if sess.header != nil {
		hdr, err := envelope.ParseHeader(sess.header)
		if err != nil {
			return err
		}
		if hdr.ContentPresent {
			return newAPIError(http.StatusBadRequest, "bad_request", "the envelope carries its content: omit envelope when the media file is a complete PKCS#7 file")
		}
	}
	if sess.obj, err = st.Open(ctx, mediaPath); err != nil {
		return err
	}
	sess.etag = playETag(tc.Storage, sess.obj)
	sess.staging = c.rt.cfg.Playback.StagingDir
	if sess.staging == "" {
		sess.staging = c.rt.cfg.Server.StagingDir
	}
	// A GCM recording is read whole at creation: take a stream slot.
	done, err := c.acquireStream(sess.tenant)
	if err != nil {
		return err
	}
	defer done()
	dk, sk, used, err := s.openRecording(c, sess)
	if err != nil {
		if used != nil {
			c.auditOutcome(used, "", 0, err)
		}
		return decryptErr(err)
	}
	sess.keyID = used.id
	sess.size = sk.Size()
	ev := c.event()
	ev.Outcome = "ok"
	ev.Bytes = sess.size
	if err := c.auditKey(ev, used, ""); err != nil {
		clear(dk.Key)
		sk.Close()
		return err
	}
	sess.token = newToken()
	sess.expires = s.play.clock().Add(pc.TokenLifetime.Duration)
	if c.rt.tokenKey != nil { // any instance of the cluster serves it (playtoken.go)
		if sess.token, err = sealToken(c.rt.tokenKey, sess); err != nil {
			clear(dk.Key)
			sk.Close()
			return err
		}
	}
	if !s.play.add(sess, dk, sk, pc) {
		clear(dk.Key)
		sk.Close()
		return errTooManySessions(pc)
	}
	url := "/v1/play/" + sess.token
	c.w.Header().Set("Location", url)
	return c.writeJSON(http.StatusCreated, playbackResponse{
		URL:         url,
		ExpiresAt:   sess.expires.UTC().Format(time.RFC3339),
		Size:        sess.size,
		ContentType: sess.ctype,
	})
}

// readMetadata reads a recording.json from storage and picks a media file.
func readMetadata(ctx context.Context, st storage.Store, path, mediaID string) (*recording.MediaFile, string, error) {
	o, err := st.Open(ctx, path)
	if err != nil {
		return nil, "", err
	}
	if o.Size() > recording.MaxMetadataSize {
		return nil, "", newAPIError(http.StatusBadRequest, "bad_metadata", "%s is larger than %d bytes: not a recording.json", o.Path(), recording.MaxMetadataSize)
	}
	rc, err := o.ReadRange(ctx, 0, o.Size())
	if err != nil {
		return nil, "", err
	}
	defer rc.Close()
	m, err := recording.Parse(rc)
	if err != nil {
		var se *storage.Error
		if errors.As(err, &se) {
			return nil, "", err
		}
		return nil, "", newAPIError(http.StatusBadRequest, "bad_metadata", "%s: %v", o.Path(), err)
	}
	if mediaID == "" {
		if len(m.MediaFiles) != 1 {
			return nil, "", newAPIError(http.StatusBadRequest, "bad_request", "%s has %d media files: name one with media_id (%s)", o.Path(), len(m.MediaFiles), strings.Join(m.IDs(), ", "))
		}
		mediaID = m.MediaFiles[0].MediaID
	}
	mf, err := m.Media(mediaID)
	if err != nil {
		return nil, "", newAPIError(http.StatusNotFound, "no_media", "%v", err)
	}
	if mf.Path == "" {
		return nil, "", newAPIError(http.StatusBadRequest, "bad_metadata", "media file %q has no originalMediaDescriptor.path", mf.MediaID)
	}
	return mf, m.ID, nil
}

// mediaType returns the Content-Type to serve: the recorder's "audio/mp3"
// is the registered audio/mpeg. Only plain audio/* and video/* types are
// served as given; anything else (empty, parameters, text/html that a
// browser would run on envelopd's origin) is application/octet-stream.
func mediaType(t string) string {
	t = strings.ToLower(strings.TrimSpace(t))
	switch t {
	case "":
		return "application/octet-stream"
	case "audio/mp3", "audio/x-mp3", "audio/mpeg3":
		return "audio/mpeg"
	}
	typ, sub, ok := strings.Cut(t, "/")
	if !ok || typ != "audio" && typ != "video" || sub == "" || strings.ContainsFunc(t, func(r rune) bool {
		return !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || strings.ContainsRune("/+-.", r))
	}) {
		return "application/octet-stream"
	}
	return t
}

// playETag is a strong validator of the plaintext: it changes whenever the
// stored file does (its storage, path, size and the storage's validator).
func playETag(store string, o storage.Object) string {
	h := sha256.Sum256([]byte(store + "\x00" + o.Path() + "\x00" + strconv.FormatInt(o.Size(), 10) + "\x00" + o.ETag()))
	return `"` + hex.EncodeToString(h[:16]) + `"`
}

// openRecording unwraps the session key (only among the tenant's keys)
// and opens the plaintext view of the recording. used is the key that was
// tried, for the audit line (nil if none was).
func (s *Server) openRecording(c *call, sess *playSession) (*envelope.DataKey, *envelope.Seekable, *tenantKey, error) {
	ctx := c.r.Context()
	src := storage.ReaderAt(ctx, sess.obj)
	res := c.keyResolver(func(name string) bool { return name == sess.tenant })
	var (
		dk  *envelope.DataKey
		sk  *envelope.Seekable
		err error
	)
	if sess.header != nil {
		rd, rerr := envelope.NewReader(bytes.NewReader(sess.header))
		if rerr != nil {
			return nil, nil, nil, rerr
		}
		if rd.Header().Authenticated {
			return nil, nil, nil, newAPIError(http.StatusBadRequest, "unsupported", "a header-only envelope cannot carry a GCM tag: play GCM recordings as complete PKCS#7 files")
		}
		if dk, err = rd.UnwrapKey(res); err != nil {
			return nil, nil, res.used, err
		}
		sk, err = envelope.OpenSeekable(src, sess.obj.Size(), dk)
	} else {
		l, lerr := envelope.Locate(src, sess.obj.Size())
		if lerr != nil {
			return nil, nil, nil, lerr
		}
		if dk, err = l.UnwrapKey(res); err != nil {
			return nil, nil, res.used, err
		}
		sk, err = l.OpenSeekable(src, dk, c.seekOptions(sess.staging))
	}
	if err != nil {
		clear(dk.Key)
		return nil, nil, res.used, err
	}
	return dk, sk, res.used, nil
}

// handlePlay serves GET and HEAD /v1/play/<token>.
func (s *Server) handlePlay(c *call) error {
	sess := s.play.session(c.r.PathValue("token"))
	if sess == nil && c.rt.tokenKey != nil {
		var err error
		if sess, err = s.adoptSession(c, c.r.PathValue("token")); err != nil {
			return err
		}
	}
	if sess == nil {
		return newAPIError(http.StatusNotFound, "not_found", "unknown or expired playback token: create a new playback session")
	}
	c.tenant, c.recID = sess.tenant, sess.recID
	c.id.name = sess.client
	if err := s.recheck(c, sess); err != nil {
		return err
	}
	h := c.w.Header()
	h.Set("Accept-Ranges", "bytes")
	h.Set("ETag", sess.etag)
	h.Set("Content-Type", sess.ctype)
	h.Set("Cache-Control", "private, no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Content-Disposition", "inline")
	off, n, partial, err := parseRange(c.r, sess.size, sess.etag)
	if err != nil {
		h.Set("Content-Range", "bytes */"+strconv.FormatInt(sess.size, 10))
		return err
	}
	status := http.StatusOK
	if partial {
		status = http.StatusPartialContent
		h.Set("Content-Range", fmt.Sprintf("bytes %d-%d/%d", off, off+n-1, sess.size))
	}
	h.Set("Content-Length", strconv.FormatInt(n, 10))
	if c.r.Method == http.MethodHead || n == 0 {
		c.w.WriteHeader(status)
		return nil
	}
	done, err := c.acquireStream(sess.tenant)
	if err != nil {
		return err
	}
	defer done()
	k, err := s.playKey(c, sess)
	if err != nil {
		return err
	}
	defer s.play.done(k)
	pt, err := k.sk.WithSource(storage.ReaderAt(c.r.Context(), sess.obj)).NewReader(off, n)
	if err != nil {
		return err
	}
	defer pt.Close()
	// The first piece decides the status: a failure before any byte is
	// sent (storage down, a bad padding in a short range at the end) is
	// an error answer, not a broken transfer.
	bp := copyBufs.Get().(*[]byte)
	defer copyBufs.Put(bp)
	buf := *bp
	first, err := io.ReadFull(pt, buf[:min(int64(len(buf)), n)])
	if err != nil {
		return s.playFailed(c, sess, err)
	}
	c.w.WriteHeader(status)
	out := meteredWriter{c.w, s}
	written := int64(first)
	if _, err := out.Write(buf[:first]); err != nil {
		return &abortError{err}
	}
	m, err := io.CopyBuffer(out, pt, buf)
	written += m
	if err == nil && written < n {
		err = io.ErrUnexpectedEOF
	}
	if err != nil {
		if c.r.Context().Err() == nil {
			// Not the client leaving: the storage or the content failed.
			c.auditOutcome(s.keyOf(c, sess), "", written, err)
		}
		return &abortError{err}
	}
	return nil
}

// meteredWriter counts playback bytes as they are sent, so that the
// metric shows what a player has fetched while it still streams.
type meteredWriter struct {
	w io.Writer
	s *Server
}

func (m meteredWriter) Write(p []byte) (int, error) {
	n, err := m.w.Write(p)
	m.s.metrics.AddBytes("playback", "out", int64(n))
	return n, err
}

// playFailed reports a failure before the first byte of a play request;
// a key was involved, so it is audited.
func (s *Server) playFailed(c *call, sess *playSession, err error) error {
	c.auditOutcome(s.keyOf(c, sess), "", 0, err)
	return decryptErr(err)
}

// keyOf finds the session's key in the current generation (for audit
// lines); nil when it is gone.
func (s *Server) keyOf(c *call, sess *playSession) *tenantKey {
	if t := c.rt.tenants[sess.tenant]; t != nil {
		for _, k := range t.keys {
			if k.id == sess.keyID {
				return k
			}
		}
	}
	return &tenantKey{tenant: sess.tenant, id: sess.keyID}
}

// playKey returns the session's cached key, unwrapping it again (audited)
// when the cache dropped it.
func (s *Server) playKey(c *call, sess *playSession) (*cachedKey, error) {
	pc := c.rt.cfg.Playback
	if k := s.play.key(sess.token, pc); k != nil {
		return k, nil
	}
	dk, sk, used, err := s.openRecording(c, sess)
	if err != nil {
		if used != nil {
			c.auditOutcome(used, "", 0, err)
		}
		return nil, decryptErr(err)
	}
	if sk.Size() != sess.size {
		clear(dk.Key)
		sk.Close()
		return nil, classifyStorage(&storage.Error{Op: "read", Store: sess.store, Path: sess.obj.Path(), Kind: storage.ErrChanged})
	}
	ev := c.event()
	ev.Outcome = "ok"
	ev.Bytes = sess.size
	if err := c.auditKey(ev, used, ""); err != nil {
		clear(dk.Key)
		sk.Close()
		return nil, err
	}
	return s.play.put(sess.token, dk, sk, pc), nil
}

// recheck checks, after a reload changed the configuration, that the
// client who created the session may still decrypt for its tenant and
// that the tenant still plays from the same storage.
func (s *Server) recheck(c *call, sess *playSession) error {
	cfg := c.rt.cfg
	if cfg == sess.cfg {
		return nil
	}
	var rule *config.Client
	for i := range cfg.Clients {
		if cfg.Clients[i].Name == sess.client {
			rule = &cfg.Clients[i]
			break
		}
	}
	if rule == nil || !sameSelectors(rule, &sess.rule) || !rule.Allows(config.OpDecrypt, sess.tenant) {
		s.log.Info("playback denied after a reload", "client", sess.client, "tenant", sess.tenant, "request_id", c.reqID)
		ev := c.event()
		ev.Outcome = "denied"
		ev.Error = "forbidden"
		ev.KeyID = sess.keyID
		if err := s.logAudit(ev); err != nil {
			s.log.Error("audit log write failed", "error", err)
		}
		return errDenied
	}
	if tc := cfg.Tenant(sess.tenant); tc == nil || tc.Storage != sess.store {
		return newAPIError(http.StatusNotFound, "not_found", "the recording's tenant or storage changed: create a new playback session")
	}
	return nil
}

// sameSelectors reports whether two client rules identify the same callers.
func sameSelectors(a, b *config.Client) bool {
	eqInt := func(x, y *int) bool { return x == nil && y == nil || x != nil && y != nil && *x == *y }
	return eqInt(a.UID, b.UID) && eqInt(a.GID, b.GID) && a.CertSubject == b.CertSubject && a.Token == b.Token
}

// errRange is a Range header that cannot be satisfied.
var errRange = &apiError{status: http.StatusRequestedRangeNotSatisfiable, code: "range_not_satisfiable", message: "the requested range is not satisfiable"}

// parseRange reads a single-range Range header (bytes=a-b, bytes=a-,
// bytes=-n) against size. partial is false when the whole body is to be
// sent: no Range, a Range that is not a single byte range (multiple ranges
// are answered with the whole body, which RFC 9110 allows), or an If-Range
// that does not match etag. An unsatisfiable range is errRange.
func parseRange(r *http.Request, size int64, etag string) (off, n int64, partial bool, err error) {
	rh := r.Header.Get("Range")
	if rh == "" || r.Method != http.MethodGet && r.Method != http.MethodHead {
		return 0, size, false, nil
	}
	if ir := r.Header.Get("If-Range"); ir != "" && ir != etag {
		// A date, a weak or another validator: the representation may
		// have changed, send it whole.
		return 0, size, false, nil
	}
	spec, ok := strings.CutPrefix(rh, "bytes=")
	if !ok || strings.Contains(spec, ",") {
		return 0, size, false, nil
	}
	a, b, ok := strings.Cut(strings.TrimSpace(spec), "-")
	if !ok {
		return 0, size, false, nil
	}
	num := func(s string) (int64, bool) {
		if s == "" || strings.TrimLeft(s, "0123456789") != "" {
			return 0, false
		}
		v, err := strconv.ParseInt(s, 10, 64)
		return v, err == nil
	}
	if a == "" {
		suffix, ok := num(b)
		if !ok {
			return 0, size, false, nil
		}
		if suffix == 0 || size == 0 {
			return 0, 0, false, errRange
		}
		suffix = min(suffix, size)
		return size - suffix, suffix, true, nil
	}
	first, ok := num(a)
	if !ok {
		return 0, size, false, nil
	}
	last := size - 1
	if b != "" {
		if last, ok = num(b); !ok || last < first {
			return 0, size, false, nil
		}
	}
	if first >= size {
		return 0, 0, false, errRange
	}
	last = min(last, size-1)
	return first, last - first + 1, true, nil
}
