package main

// Client mode: encrypt/decrypt through a running daemon (-socket). The input
// is streamed to the daemon and its answer streamed to the output; an output
// file appears only when the whole answer arrived (a broken transfer, which
// is how the daemon signals a failure after the response started, leaves
// nothing behind).

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"

	"github.com/envelopd/envelopd/recording"
)

// clientOptions are the flags shared by client-mode encrypt and decrypt.
type clientOptions struct {
	Socket string // Unix socket path of envelopd serve
	Tenant string // tenant for encrypt
	Cipher string // optional cipher name for encrypt
	In     string // input path ("" = stdin)
	Out    string // output path ("" = stdout); written atomically
	Header string // decrypt: header-only envelope file (PEM or DER) or recording.json, for a raw ciphertext input
	Media  string // decrypt: mediaId of the entry of a recording.json -header
}

// maxHeaderFile bounds a -header file.
const maxHeaderFile = 1 << 20

// unixSendBuffer is the send buffer (SO_SNDBUF) asked for the connection
// to the daemon. On a Unix stream socket the sender's buffer is the whole
// window; the default (208 KiB) makes a large upload block and wake the
// daemon every few tens of KiB. (The daemon keeps the default for its
// answers: a larger one would hide a slow reader from its rate limit.)
const unixSendBuffer = 1 << 20

// clientBuffer is the size of the HTTP client's read and write buffers
// (net/http's default, 4 KiB, turns a streamed answer into many small
// reads).
const clientBuffer = 64 << 10

func unixClient(socket string) *http.Client {
	return &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			c, err := d.DialContext(ctx, "unix", socket)
			if uc, ok := c.(*net.UnixConn); ok && err == nil {
				_ = uc.SetWriteBuffer(unixSendBuffer) // best effort: smaller is only slower
			}
			return c, err
		},
		DisableCompression: true,
		ReadBufferSize:     clientBuffer,
		WriteBufferSize:    clientBuffer,
	}}
}

func runClientEncrypt(ctx context.Context, env *cliEnv, o clientOptions) error {
	if o.Tenant == "" {
		return errors.New("encrypt -socket needs -tenant")
	}
	u := "http://envelopd/v1/tenants/" + url.PathEscape(o.Tenant) + "/encrypt"
	if o.Cipher != "" {
		u += "?cipher=" + url.QueryEscape(o.Cipher)
	}
	return clientStream(ctx, env, o, u, nil, 0o644)
}

func runClientDecrypt(ctx context.Context, env *cliEnv, o clientOptions) error {
	hdr := http.Header{}
	if o.Header != "" {
		der, err := readHeaderFile(o.Header, o.Media)
		if err != nil {
			return err
		}
		hdr.Set("X-Envelope", base64.StdEncoding.EncodeToString(der))
	}
	return clientStream(ctx, env, o, "http://envelopd/v1/decrypt", hdr, 0o600)
}

// readHeaderFile reads a header-only envelope, PEM or DER, or a
// recording's metadata (recording.json, told apart by content) whose media
// file media (optional when there is only one) carries one, and returns
// the DER.
func readHeaderFile(path, media string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("cannot open -header: %w", err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, recording.MaxMetadataSize+1))
	if err != nil {
		return nil, fmt.Errorf("cannot read -header: %w", err)
	}
	if recording.IsMetadata(b) {
		return headerFromMetadata(path, b, media)
	}
	if media != "" {
		return nil, fmt.Errorf("-media goes with a recording.json -header; %s is an envelope", path)
	}
	if len(b) > maxHeaderFile {
		return nil, fmt.Errorf("-header %s is larger than %d bytes; is it a header-only envelope?", path, maxHeaderFile)
	}
	if t := bytes.TrimSpace(b); bytes.HasPrefix(t, []byte("-----BEGIN")) {
		blk, _ := pem.Decode(t)
		if blk == nil || (blk.Type != "PKCS7" && blk.Type != "CMS") {
			return nil, fmt.Errorf("-header %s: not a PKCS7 or CMS PEM block", path)
		}
		return blk.Bytes, nil
	}
	return b, nil
}

// headerFromMetadata returns the DER of the envelope of media file media
// of the recording.json b read from path.
func headerFromMetadata(path string, b []byte, media string) ([]byte, error) {
	m, err := recording.Parse(bytes.NewReader(b))
	if err != nil {
		return nil, fmt.Errorf("-header %s: %w", path, err)
	}
	mf, err := m.Media(media)
	if err != nil {
		if media == "" {
			return nil, fmt.Errorf("-header %s: %w (choose with -media)", path, err)
		}
		return nil, fmt.Errorf("-header %s: -media: %w", path, err)
	}
	der, err := mf.Header()
	if err != nil {
		return nil, fmt.Errorf("-header %s: %w", path, err)
	}
	return der, nil
}

func clientStream(ctx context.Context, env *cliEnv, o clientOptions, u string, hdr http.Header, perm os.FileMode) error {
	in, err := openIn(env, o.In)
	if err != nil {
		return err
	}
	defer in.Close()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u, in)
	if err != nil {
		return err
	}
	req.ContentLength = -1
	if f, ok := in.(*os.File); ok {
		if st, err := f.Stat(); err == nil && st.Mode().IsRegular() {
			req.ContentLength = st.Size() // lets the daemon write definite-length DER
		}
	}
	if req.ContentLength == 0 {
		req.Body = http.NoBody
	}
	for k, v := range hdr {
		req.Header[k] = v
	}
	req.Header.Set("Content-Type", "application/octet-stream")
	resp, err := unixClient(o.Socket).Do(req)
	if err != nil {
		return fmt.Errorf("cannot reach the daemon at %s: %w", o.Socket, unwrapURLError(err))
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return daemonError(resp)
	}
	out, err := createOut(env, o.Out, perm)
	if err != nil {
		return err
	}
	defer out.abort()
	// Large reads and writes: the default 32 KiB pieces cost a system call
	// pair per 32 KiB of a multi-GiB recording.
	if _, err := io.CopyBuffer(out, resp.Body, make([]byte, 1<<20)); err != nil {
		return fmt.Errorf("the daemon's answer was cut short (treat the output as failed): %w", unwrapURLError(err))
	}
	return out.commit()
}

// daemonError turns an error response into a one-line error.
func daemonError(resp *http.Response) error {
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	var e struct {
		Error struct {
			Code    string `json:"code"`
			Message string `json:"message"`
		} `json:"error"`
	}
	if json.Unmarshal(b, &e) == nil && e.Error.Message != "" {
		return fmt.Errorf("daemon: %s (%s, HTTP %d)", e.Error.Message, e.Error.Code, resp.StatusCode)
	}
	return fmt.Errorf("daemon: HTTP %s: %s", resp.Status, strings.TrimSpace(string(b)))
}

func unwrapURLError(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err
	}
	return err
}
