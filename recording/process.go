package recording

import (
	"archive/zip"
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"path"
	"runtime"
	"strings"
	"sync"

	"github.com/envelopd/envelopd/envelope"
)

// Op is what Run does with each recording.
type Op int

const (
	// List reads every envelope's header and, with Job.Keys, whether a
	// key opens it (the data key is unwrapped, nothing is decrypted).
	List Op = iota + 1
	// Verify decrypts every media file and checks its padding or tag,
	// writing nothing.
	Verify
	// Decrypt writes the plaintext of every media file under its name
	// without the ".bin" suffix (OutputName), and recording.json as it is.
	Decrypt
	// Rekey writes every envelope (complete media files and the pkcs7
	// members of recording.json) re-wrapped by Job.Rewrapper, and raw
	// media as they are, under the same names.
	Rekey
)

func (o Op) String() string {
	switch o {
	case List:
		return "list"
	case Verify:
		return "verify"
	case Decrypt:
		return "decrypt"
	case Rekey:
		return "rekey"
	}
	return fmt.Sprintf("Op(%d)", int(o))
}

// Job says what Run does.
type Job struct {
	Op Op
	// Keys open the envelopes (Verify, Decrypt; optional for List).
	Keys KeyOpener
	// Rewrapper re-wraps the envelopes (Rekey).
	Rewrapper Rewrapper
	// Out receives the files (Decrypt, Rekey). Run does not close it.
	Out Output
	// Resume skips the files Out already has.
	Resume bool
	// Workers is the number of recordings processed at once (0 = four
	// per CPU, so that file system waits overlap the work).
	Workers int
	// TempDir is where AES-GCM content is staged while it is
	// authenticated ("" = the system's).
	TempDir string
	// Progress, if set, is called (from many goroutines) as files and
	// recordings are done.
	Progress func(recordings, bytes int64)
	// Describe, if set, turns an error of opening an envelope into the
	// message of the report (h may be nil).
	Describe func(err error, h *envelope.Header) error
	// OnItem, if set, is given each recording's report as it is done (one
	// call at a time, in the order they finish), and Report.Items then
	// keeps only the failed ones: memory stays independent of the number
	// of recordings, apart from the archive's central directory.
	OnItem func(RecordingReport)
}

// Report is the outcome of Run, also as JSON (-json).
type Report struct {
	Archive    string `json:"archive"`
	Operation  string `json:"operation"`
	Recordings int    `json:"recordings"`
	OK         int    `json:"ok"`
	Failed     int    `json:"failed"`
	Skipped    int    `json:"skipped"`
	Bytes      int64  `json:"bytes"`
	// Items are the reports of the recordings in the archive's order, then
	// of the refused entries; with Job.OnItem, only the failed ones.
	Items []RecordingReport `json:"items"`
}

// Status values of reports.
const (
	StatusOK      = "ok"
	StatusFailed  = "failed"
	StatusSkipped = "skipped" // -resume: already complete
)

// RecordingReport is what happened to one recording (or refused entry).
type RecordingReport struct {
	Name   string       `json:"name"`
	ID     string       `json:"id,omitempty"`
	Tenant string       `json:"tenant,omitempty"`
	Status string       `json:"status"`
	Error  string       `json:"error,omitempty"`
	Files  []FileReport `json:"files,omitempty"`
}

// FileReport is what happened to one file of a recording.
type FileReport struct {
	Name string `json:"name"`
	// Output is the name written, if any.
	Output string `json:"output,omitempty"`
	// Kind is "metadata" (recording.json), "envelope" (a complete
	// PKCS#7 file) or "raw" (ciphertext whose envelope is in
	// recording.json).
	Kind       string   `json:"kind,omitempty"`
	MediaID    string   `json:"mediaId,omitempty"`
	Cipher     string   `json:"cipher,omitempty"`
	Recipients []string `json:"recipients,omitempty"`
	// KeyHere tells (List with keys) whether a key given opens it.
	KeyHere *bool  `json:"keyHere,omitempty"`
	Bytes   int64  `json:"bytes"`
	Status  string `json:"status"`
	Error   string `json:"error,omitempty"`
}

// Failures lists every failure of the report as "name: error" lines.
func (r *Report) Failures() []string {
	var out []string
	for _, it := range r.Items {
		if it.Status != StatusFailed {
			continue
		}
		if it.Error != "" {
			out = append(out, it.Name+": "+it.Error)
		}
		for _, f := range it.Files {
			if f.Status == StatusFailed {
				out = append(out, f.Name+": "+f.Error)
			}
		}
	}
	return out
}

// Run processes every recording of the archive on Job.Workers goroutines,
// each recording in constant memory. A failing recording does not stop the
// others: its report says why. Refused entries are reported as failures.
// Run returns an error only when it could not run at all, or with ctx's
// error when it was cancelled (recordings not started are then failed).
func (a *Archive) Run(ctx context.Context, job *Job) (*Report, error) {
	switch job.Op {
	case List:
	case Verify, Decrypt:
		if job.Keys == nil {
			return nil, errors.New("recording: no keys given")
		}
	case Rekey:
		if job.Rewrapper == nil {
			return nil, errors.New("recording: no rewrapper given")
		}
	default:
		return nil, fmt.Errorf("recording: unknown operation %v", job.Op)
	}
	if (job.Op == Decrypt || job.Op == Rekey) && job.Out == nil {
		return nil, errors.New("recording: no output given")
	}
	workers := job.Workers
	if workers <= 0 {
		workers = 4 * runtime.GOMAXPROCS(0)
	}
	rep := &Report{Archive: a.Path, Operation: job.Op.String(), Recordings: len(a.Recordings)}
	var mu sync.Mutex
	var items []RecordingReport
	if job.OnItem == nil {
		items = make([]RecordingReport, len(a.Recordings))
	}
	done := func(i int, it RecordingReport) {
		mu.Lock()
		defer mu.Unlock()
		switch it.Status {
		case StatusOK:
			rep.OK++
		case StatusSkipped:
			rep.Skipped++
		default:
			rep.Failed++
		}
		for _, f := range it.Files {
			if f.Status != StatusSkipped {
				rep.Bytes += f.Bytes
			}
		}
		if job.OnItem == nil {
			if i >= 0 {
				items[i] = it
			}
			return
		}
		job.OnItem(it)
		if it.Status == StatusFailed {
			items = append(items, it)
		}
	}
	next := make(chan int)
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				rec := a.Recordings[i]
				if ctx.Err() != nil {
					done(i, RecordingReport{Name: rec.Name, Status: StatusFailed, Error: "interrupted"})
					continue
				}
				p := &proc{job: job, ctx: ctx, rec: rec}
				done(i, p.run())
				if job.Progress != nil {
					job.Progress(1, 0)
				}
			}
		}()
	}
	for i := range a.Recordings {
		next <- i
	}
	close(next)
	wg.Wait()
	for _, r := range a.Refused {
		it := RecordingReport{Name: r.Name, Status: StatusFailed, Error: "refused: " + r.Reason}
		if job.OnItem == nil {
			items = append(items, it)
		}
		done(-1, it)
	}
	rep.Items = items
	return rep, ctx.Err()
}

// proc processes one recording.
type proc struct {
	job *Job
	ctx context.Context
	rec *Recording
	rr  RecordingReport
}

func (p *proc) describe(err error, h *envelope.Header) string {
	if p.job.Describe != nil {
		err = p.job.Describe(err, h)
	}
	return err.Error()
}

// fail records a failure of the recording itself.
func (p *proc) fail(format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	if p.rr.Error == "" {
		p.rr.Error = msg
	} else {
		p.rr.Error += "; " + msg
	}
}

func (p *proc) progress(n int64) {
	if p.job.Progress != nil {
		p.job.Progress(0, n)
	}
}

// readMetadata reads and parses a recording.json entry.
func readMetadata(zf *zip.File) (*Metadata, error) {
	rc, err := zf.Open()
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	return Parse(rc)
}

// mediaFor finds the media file of recording.json that a file of the
// archive holds: by its name equal to the mediaId, or to the last element
// of the media's storage path or URI.
func mediaFor(m *Metadata, name string) *MediaFile {
	if m == nil {
		return nil
	}
	base := path.Base(name)
	for _, f := range m.MediaFiles {
		if f.MediaID == base {
			return f
		}
	}
	for _, f := range m.MediaFiles {
		if f.Path != "" && path.Base(f.Path) == base || f.MediaURI != "" && path.Base(strings.SplitN(f.MediaURI, "?", 2)[0]) == base {
			return f
		}
	}
	return nil
}

func (p *proc) run() RecordingReport {
	rec := p.rec
	p.rr = RecordingReport{Name: rec.Name, Tenant: rec.Tenant, ID: rec.ID}
	var meta *Metadata
	if rec.Metadata != nil {
		m, err := readMetadata(rec.Metadata)
		if err != nil {
			p.fail("%s: %v", MetadataName, err)
		} else {
			meta = m
			if p.rr.ID == "" {
				p.rr.ID = m.ID
			}
			if p.rr.Tenant == "" {
				for _, f := range m.MediaFiles {
					if f.Tenant != "" {
						p.rr.Tenant = f.Tenant
						break
					}
				}
			}
		}
	}

	// Rekey: re-wrap the envelopes of recording.json first, keeping the
	// data keys learnt to check them against raw media.
	var keys map[*MediaFile]*envelope.DataKey
	metaOK := meta != nil
	if p.job.Op == Rekey && meta != nil {
		keys = map[*MediaFile]*envelope.DataKey{}
		defer func() {
			for _, dk := range keys {
				if dk != nil {
					clear(dk.Key)
				}
			}
		}()
		for _, f := range meta.MediaFiles {
			if f.PKCS7 == "" {
				continue
			}
			if err := p.rewrapHeader(f, keys); err != nil {
				p.fail("%s: mediaId %q: %s", MetadataName, f.MediaID, err)
				metaOK = false
			}
		}
	}

	used := map[*MediaFile]bool{}
	for _, zf := range rec.Files {
		if p.ctx.Err() != nil {
			p.fail("interrupted")
			break
		}
		mf := mediaFor(meta, zf.Name)
		if mf != nil {
			used[mf] = true
		}
		fr := p.file(zf, mf, keys)
		if fr.Status == StatusFailed && fr.Kind == "raw" && p.job.Op == Rekey {
			metaOK = false // a raw media file whose key failed its check
		}
		p.rr.Files = append(p.rr.Files, fr)
		p.progress(fr.Bytes)
	}
	if meta != nil {
		for _, f := range meta.MediaFiles {
			if f.PKCS7 != "" && !used[f] {
				p.rr.Files = append(p.rr.Files, FileReport{Name: path.Join(rec.Name, f.MediaID), Kind: "raw", MediaID: f.MediaID,
					Status: StatusFailed, Error: "media file of recording.json not in the archive"})
			}
		}
	}
	if meta != nil { // unreadable metadata is the recording's own error
		fr := p.metadata(rec.Metadata, meta, metaOK)
		p.rr.Files = append(p.rr.Files, fr)
		p.progress(fr.Bytes)
	}

	p.rr.Status = StatusOK
	skipped := len(p.rr.Files) > 0
	for _, f := range p.rr.Files {
		if f.Status == StatusFailed {
			p.rr.Status = StatusFailed
		}
		if f.Status != StatusSkipped {
			skipped = false
		}
	}
	if p.rr.Error != "" {
		p.rr.Status = StatusFailed
	} else if skipped {
		p.rr.Status = StatusSkipped
	}
	return p.rr
}

// rewrapHeader re-wraps the envelope of f in place.
func (p *proc) rewrapHeader(f *MediaFile, keys map[*MediaFile]*envelope.DataKey) error {
	der, err := f.Header()
	if err != nil {
		return err
	}
	r, err := envelope.NewReader(bytes.NewReader(der))
	if err != nil {
		return err
	}
	if r.Header().ContentPresent {
		return fmt.Errorf("pkcs7 carries content; want a header-only envelope")
	}
	var out bytes.Buffer
	dk, err := p.job.Rewrapper.Rewrap(p.ctx, r, &out)
	if err != nil {
		return errors.New(p.describe(err, r.Header()))
	}
	keys[f] = dk
	f.SetHeader(out.Bytes())
	return nil
}

// metadata handles recording.json: reported by List and Verify, copied as
// it is by Decrypt, rewritten by Rekey (only when all went well).
func (p *proc) metadata(zf *zip.File, meta *Metadata, ok bool) FileReport {
	fr := FileReport{Name: zf.Name, Kind: "metadata", Bytes: int64(zf.UncompressedSize64), Status: StatusOK}
	switch p.job.Op {
	case Decrypt:
		fr.Output = zf.Name
		if p.job.Resume && p.job.Out.Exists(fr.Output) {
			fr.Status = StatusSkipped
			return fr
		}
		err := p.write(fr.Output, zf, func(w io.Writer) error {
			rc, err := zf.Open()
			if err != nil {
				return err
			}
			defer rc.Close()
			_, err = io.Copy(w, rc)
			return err
		})
		if err != nil {
			fr.Status, fr.Error = StatusFailed, err.Error()
		}
	case Rekey:
		fr.Output = zf.Name
		if !ok {
			fr.Status, fr.Error = StatusFailed, "not written: a media file or envelope of this recording failed"
			return fr
		}
		if p.job.Resume && p.job.Out.Exists(fr.Output) {
			fr.Status = StatusSkipped
			return fr
		}
		if err := p.write(fr.Output, zf, func(w io.Writer) error { _, err := meta.WriteTo(w); return err }); err != nil {
			fr.Status, fr.Error = StatusFailed, err.Error()
		}
	}
	return fr
}

// write creates name in the output with what fill writes.
func (p *proc) write(name string, src *zip.File, fill func(io.Writer) error) error {
	out, err := p.job.Out.Create(name, src.Modified)
	if err != nil {
		return fmt.Errorf("cannot create the output: %w", err)
	}
	if err := fill(out); err != nil {
		out.Abort()
		return err
	}
	if err := out.Commit(); err != nil {
		return fmt.Errorf("cannot write the output: %w", err)
	}
	return nil
}

// looksLikeEnvelope peeks at the first byte that is not white space.
func looksLikeEnvelope(br *bufio.Reader) bool {
	for i := 1; i <= 64; i++ {
		b, _ := br.Peek(i)
		if len(b) < i {
			return false
		}
		switch c := b[i-1]; c {
		case ' ', '\t', '\r', '\n':
			continue
		case 0x30, '-':
			return true
		default:
			return false
		}
	}
	return false
}

func cipherName(h *envelope.Header) string { return h.Cipher.String() }

func recipientNames(h *envelope.Header) []string {
	var out []string
	for _, ri := range h.Recipients {
		switch {
		case ri.SubjectKeyID != nil:
			out = append(out, fmt.Sprintf("subject key id %X", ri.SubjectKeyID))
		case ri.Serial != nil:
			out = append(out, fmt.Sprintf("%s serial %X", ri.IssuerString, ri.Serial.Bytes()))
		}
	}
	return out
}

// file handles one file of a recording; mf is its media entry in
// recording.json, if any.
func (p *proc) file(zf *zip.File, mf *MediaFile, keys map[*MediaFile]*envelope.DataKey) FileReport {
	fr := FileReport{Name: zf.Name, Bytes: int64(zf.UncompressedSize64), Status: StatusOK}
	if mf != nil {
		fr.MediaID = mf.MediaID
	}
	failed := func(msg string) FileReport {
		fr.Status, fr.Error = StatusFailed, msg
		return fr
	}
	rc, err := zf.Open()
	if err != nil {
		return failed(err.Error())
	}
	defer rc.Close()
	br := bufio.NewReaderSize(rc, 4<<10) // for peeking: the codec buffers its own reads
	var r *envelope.Reader
	var perr error
	if looksLikeEnvelope(br) {
		r, perr = envelope.NewReader(br)
		if perr == nil && !r.Header().ContentPresent {
			return failed("a header-only envelope without its ciphertext")
		}
	} else {
		perr = errors.New("not a PKCS#7 envelope")
	}

	switch {
	case perr == nil:
		fr.Kind = "envelope"
		h := r.Header()
		fr.Cipher, fr.Recipients = cipherName(h), recipientNames(h)
		return p.complete(fr, zf, r)
	case mf != nil && mf.PKCS7 != "":
		fr.Kind = "raw"
		rc.Close()
		raw, err := zf.Open()
		if err != nil {
			return failed(err.Error())
		}
		defer raw.Close()
		var dk *envelope.DataKey
		if keys != nil {
			dk = keys[mf]
		}
		return p.raw(fr, zf, mf, raw, dk)
	case mf != nil:
		return failed("its entry in recording.json has no pkcs7 envelope, and it is not a PKCS#7 file")
	}
	return failed(p.describe(perr, nil))
}

// complete handles a complete envelope r.
func (p *proc) complete(fr FileReport, zf *zip.File, r *envelope.Reader) FileReport {
	h := r.Header()
	failed := func(err error) FileReport {
		fr.Status, fr.Error = StatusFailed, p.describe(err, h)
		return fr
	}
	r.TempDir = p.job.TempDir
	switch p.job.Op {
	case List:
		if p.job.Keys != nil {
			dk, err := p.job.Keys.DataKey(p.ctx, r)
			ok := err == nil
			fr.KeyHere = &ok
			if ok {
				clear(dk.Key)
			} else if !errors.Is(err, envelope.ErrNoRecipient) && !errors.Is(err, envelope.ErrDecrypt) {
				fr.Error = p.describe(err, h)
			}
		}
		return fr
	case Verify:
		return p.decrypt(fr, r, nil, failed)
	case Decrypt:
		fr.Output = OutputName(zf.Name)
		if p.job.Resume && p.job.Out.Exists(fr.Output) {
			fr.Status = StatusSkipped
			return fr
		}
		return p.decrypt(fr, r, zf, failed)
	case Rekey:
		fr.Output = zf.Name
		if p.job.Resume && p.job.Out.Exists(fr.Output) {
			fr.Status = StatusSkipped
			return fr
		}
		err := p.write(fr.Output, zf, func(w io.Writer) error {
			dk, err := p.job.Rewrapper.Rewrap(p.ctx, r, w)
			if dk != nil {
				clear(dk.Key)
			}
			return err
		})
		if err != nil {
			return failed(err)
		}
	}
	return fr
}

// decrypt decrypts the complete envelope r, to the output when zf is set.
func (p *proc) decrypt(fr FileReport, r *envelope.Reader, zf *zip.File, failed func(error) FileReport) FileReport {
	dk, err := p.job.Keys.DataKey(p.ctx, r)
	if err != nil {
		return failed(err)
	}
	defer clear(dk.Key)
	plain, err := r.DecryptKey(dk)
	if err != nil {
		return failed(err)
	}
	defer plain.Close()
	if zf == nil {
		_, err = io.Copy(io.Discard, plain)
	} else {
		err = p.write(fr.Output, zf, func(w io.Writer) error { _, err := io.Copy(w, plain); return err })
	}
	if err == nil {
		err = plain.Close()
	}
	if err != nil {
		return failed(err)
	}
	return fr
}

// raw handles raw ciphertext whose envelope is mf's; dk is the data key
// learnt while re-wrapping it (Rekey), if any.
func (p *proc) raw(fr FileReport, zf *zip.File, mf *MediaFile, ct io.Reader, dk *envelope.DataKey) FileReport {
	der, err := mf.Header()
	if err != nil {
		fr.Status, fr.Error = StatusFailed, "recording.json: "+err.Error()
		return fr
	}
	r, err := envelope.NewReader(bytes.NewReader(der))
	if err != nil {
		fr.Status, fr.Error = StatusFailed, "recording.json: pkcs7: "+p.describe(err, nil)
		return fr
	}
	h := r.Header()
	fr.Cipher, fr.Recipients = cipherName(h), recipientNames(h)
	failed := func(err error) FileReport {
		fr.Status, fr.Error = StatusFailed, p.describe(err, h)
		return fr
	}
	if p.job.Op == Rekey {
		fr.Output = zf.Name
		if p.job.Resume && p.job.Out.Exists(fr.Output) {
			fr.Status = StatusSkipped
			return fr
		}
		var check *envelope.ContentCheck
		if dk != nil {
			if check, err = envelope.NewContentCheck(dk); err != nil {
				return failed(err)
			}
		}
		err := p.write(fr.Output, zf, func(w io.Writer) error {
			src := ct
			if check != nil {
				src = io.TeeReader(ct, check)
			}
			if _, err := io.Copy(w, src); err != nil {
				return err
			}
			if check != nil {
				return check.Check()
			}
			return nil
		})
		if err != nil {
			return failed(err)
		}
		return fr
	}
	if h.Authenticated {
		return failed(fmt.Errorf("%w: raw content with %v", envelope.ErrUnsupported, h.Cipher))
	}
	if p.job.Op == Decrypt {
		fr.Output = OutputName(zf.Name)
		if p.job.Resume && p.job.Out.Exists(fr.Output) {
			fr.Status = StatusSkipped
			return fr
		}
	}
	key, err := p.job.keysOrNil(p.ctx, r)
	if p.job.Op == List {
		if p.job.Keys != nil {
			ok := err == nil
			fr.KeyHere = &ok
			if !ok && !errors.Is(err, envelope.ErrNoRecipient) && !errors.Is(err, envelope.ErrDecrypt) {
				fr.Error = p.describe(err, h)
			}
		}
		if key != nil {
			clear(key.Key)
		}
		return fr
	}
	if err != nil {
		return failed(err)
	}
	defer clear(key.Key)
	plain, err := envelope.DecryptContent(ct, key)
	if err != nil {
		return failed(err)
	}
	closer, _ := plain.(io.Closer)
	if closer != nil {
		defer closer.Close()
	}
	if p.job.Op == Verify {
		_, err = io.Copy(io.Discard, plain)
	} else {
		err = p.write(fr.Output, zf, func(w io.Writer) error { _, err := io.Copy(w, plain); return err })
	}
	if err != nil {
		return failed(err)
	}
	return fr
}

// keysOrNil unwraps with Keys, or reports ErrNoRecipient without keys.
func (j *Job) keysOrNil(ctx context.Context, r *envelope.Reader) (*envelope.DataKey, error) {
	if j.Keys == nil {
		return nil, envelope.ErrNoRecipient
	}
	return j.Keys.DataKey(ctx, r)
}
