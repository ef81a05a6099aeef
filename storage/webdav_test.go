package storage

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/envelopd/envelopd/internal/testenv"
	"github.com/envelopd/envelopd/internal/testenv/webdavtest"
)

func newDAV(t *testing.T, url, user, pass string, mod func(*WebDAVOptions)) *WebDAV {
	t.Helper()
	o := WebDAVOptions{Name: "recs", URL: url, Username: user, Password: "pass:" + pass, RetryDelay: 10 * time.Millisecond, Timeout: 5 * time.Second}
	if mod != nil {
		mod(&o)
	}
	w, err := NewWebDAV(o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { w.Close() })
	return w
}

func TestWebDAVStore(t *testing.T) {
	srv := webdavtest.Start(t, nil)
	w := newDAV(t, srv.URL, srv.User, srv.Pass, nil)
	conformance(t, w, srv.Dir)
}

func TestWebDAVBaseURLAndPut(t *testing.T) {
	srv := webdavtest.Start(t, nil)
	data := randBytes(t, 70000)
	srv.Put(t, "/dav/recordings/2026/11/27/x y%z.bin", bytes.NewReader(data))
	w := newDAV(t, srv.URL+"dav", srv.User, srv.Pass, nil)
	o, err := w.Open(context.Background(), "/recordings/2026/11/27/x y%z.bin")
	if err != nil {
		t.Fatal(err)
	}
	rc, err := o.ReadRange(context.Background(), 5, 100)
	if err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(rc)
	rc.Close()
	if !bytes.Equal(got, data[5:105]) {
		t.Fatal("wrong bytes through a base URL with a path")
	}
}

// noSecret fails t if err's message holds the password or the user name
// with it.
func noSecret(t *testing.T, err error, pass string) {
	t.Helper()
	if err != nil && strings.Contains(err.Error(), pass) {
		t.Fatalf("error reveals the password: %v", err)
	}
}

func TestWebDAVRefused(t *testing.T) {
	srv := webdavtest.Start(t, nil)
	writeFile(t, filepath.Join(srv.Dir, "a.bin"), []byte("data"))
	wrong := "wrong-" + srv.Pass
	w := newDAV(t, srv.URL, srv.User, wrong, nil)
	_, err := w.Open(context.Background(), "/a.bin")
	if !errors.Is(err, ErrRefused) {
		t.Fatalf("wrong password: got %v, want ErrRefused", err)
	}
	var e *Error
	if !errors.As(err, &e) || e.Status != 401 || !strings.Contains(err.Error(), "refused the credentials") {
		t.Fatalf("wrong password: unclear error %v", err)
	}
	noSecret(t, err, wrong)

	// 403 comes from a proxy: rclone has no per-file permissions.
	p := webdavtest.NewProxy(t, srv.URL, func(r *http.Request, n int) *webdavtest.Fault {
		return &webdavtest.Fault{Status: http.StatusForbidden}
	})
	w = newDAV(t, p.URL, srv.User, srv.Pass, nil)
	_, err = w.Open(context.Background(), "/a.bin")
	if !errors.Is(err, ErrRefused) {
		t.Fatalf("403: got %v, want ErrRefused", err)
	}
	noSecret(t, err, srv.Pass)
}

func TestWebDAVRetryAndResume(t *testing.T) {
	srv := webdavtest.Start(t, nil)
	data := randBytes(t, 1<<20)
	writeFile(t, filepath.Join(srv.Dir, "r.bin"), data)
	ctx := context.Background()
	var fault func(r *http.Request, n int) *webdavtest.Fault
	p := webdavtest.NewProxy(t, srv.URL, func(r *http.Request, n int) *webdavtest.Fault {
		if fault != nil {
			return fault(r, n)
		}
		return nil
	})
	w := newDAV(t, p.URL, srv.User, srv.Pass, nil)
	read := func(o Object, off, n int64) ([]byte, error) {
		rc, err := o.ReadRange(ctx, off, n)
		if err != nil {
			return nil, err
		}
		defer rc.Close()
		return io.ReadAll(rc)
	}

	t.Run("503 once is retried", func(t *testing.T) {
		p.SetFault(func(r *http.Request, n int) *webdavtest.Fault {
			if n == 1 {
				return &webdavtest.Fault{Status: 503}
			}
			return nil
		})
		o, err := w.Open(ctx, "r.bin")
		if err != nil {
			t.Fatal(err)
		}
		if got := len(p.Requests()); got != 2 {
			t.Fatalf("%d requests, want 2 (one retry)", got)
		}
		p.SetFault(func(r *http.Request, n int) *webdavtest.Fault {
			if n == 1 {
				return &webdavtest.Fault{Drop: true}
			}
			return nil
		})
		got, err := read(o, 1000, 5000)
		if err != nil || !bytes.Equal(got, data[1000:6000]) {
			t.Fatalf("read after a dropped connection: %v", err)
		}
	})
	t.Run("503 twice fails", func(t *testing.T) {
		p.SetFault(func(r *http.Request, n int) *webdavtest.Fault { return &webdavtest.Fault{Status: 503} })
		_, err := w.Open(ctx, "r.bin")
		if !errors.Is(err, ErrUnavailable) {
			t.Fatalf("got %v, want ErrUnavailable", err)
		}
		if got := len(p.Requests()); got != 2 {
			t.Fatalf("%d requests, want 2 (one retry only)", got)
		}
	})
	t.Run("404 is not retried", func(t *testing.T) {
		p.SetFault(nil)
		_, err := w.Open(ctx, "nope.bin")
		if !errors.Is(err, ErrNotFound) || len(p.Requests()) != 1 {
			t.Fatalf("got %v after %d requests", err, len(p.Requests()))
		}
	})
	t.Run("a broken body resumes where it stopped", func(t *testing.T) {
		p.SetFault(nil)
		o, err := w.Open(ctx, "r.bin")
		if err != nil {
			t.Fatal(err)
		}
		p.SetFault(func(r *http.Request, n int) *webdavtest.Fault {
			if n == 1 {
				return &webdavtest.Fault{CutAfter: 300000}
			}
			return nil
		})
		got, err := read(o, 100, 700000)
		if err != nil || !bytes.Equal(got, data[100:700100]) {
			t.Fatalf("resumed read: %d bytes, %v", len(got), err)
		}
		reqs := p.Requests()
		if len(reqs) != 2 || !strings.HasSuffix(reqs[0], "bytes=100-700099") || !strings.HasSuffix(reqs[1], "-700099") || strings.HasSuffix(reqs[1], "bytes=100-700099") {
			t.Fatalf("requests %q: want the range, then its rest", reqs)
		}
	})
	t.Run("a body broken twice fails", func(t *testing.T) {
		p.SetFault(nil)
		o, err := w.Open(ctx, "r.bin")
		if err != nil {
			t.Fatal(err)
		}
		p.SetFault(func(r *http.Request, n int) *webdavtest.Fault { return &webdavtest.Fault{CutAfter: 100000} })
		_, err = read(o, 0, 700000)
		if !errors.Is(err, ErrUnavailable) {
			t.Fatalf("got %v, want ErrUnavailable", err)
		}
	})
	t.Run("ranges, not the file", func(t *testing.T) {
		p.SetFault(nil)
		o, err := w.Open(ctx, "r.bin")
		if err != nil {
			t.Fatal(err)
		}
		if _, err := read(o, 900000, 65536); err != nil {
			t.Fatal(err)
		}
		reqs := p.Requests()
		if len(reqs) != 2 || !strings.HasPrefix(reqs[0], "HEAD") || !strings.HasSuffix(reqs[1], "bytes=900000-965535") {
			t.Fatalf("requests %q", reqs)
		}
	})
	t.Run("connections are reused", func(t *testing.T) {
		p.SetFault(nil)
		before := p.Conns()
		o, err := w.Open(ctx, "r.bin")
		if err != nil {
			t.Fatal(err)
		}
		for i := range 20 {
			if _, err := read(o, int64(i)*1000, 1000); err != nil {
				t.Fatal(err)
			}
		}
		if n := p.Conns() - before; n > 1 {
			t.Fatalf("%d new connections for 21 sequential requests", n)
		}
	})
}

func TestWebDAVChangedFile(t *testing.T) {
	srv := webdavtest.Start(t, nil)
	w := newDAV(t, srv.URL, srv.User, srv.Pass, nil)
	ctx := context.Background()
	srv.Put(t, "c.bin", bytes.NewReader(bytes.Repeat([]byte("a"), 1000)))
	o, err := w.Open(ctx, "c.bin")
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(1100 * time.Millisecond) // a new modification time
	srv.Put(t, "c.bin", bytes.NewReader(bytes.Repeat([]byte("b"), 1000)))
	rc, err := o.ReadRange(ctx, 0, 10)
	if err == nil {
		b, _ := io.ReadAll(rc)
		rc.Close()
		t.Fatalf("read of a replaced file returned %q", b)
	}
	if !errors.Is(err, ErrChanged) {
		t.Fatalf("got %v, want ErrChanged", err)
	}
}

func TestWebDAVTLS(t *testing.T) {
	srv := webdavtest.Start(t, &webdavtest.Options{TLS: true})
	writeFile(t, filepath.Join(srv.Dir, "t.bin"), []byte("over tls"))
	w := newDAV(t, srv.URL, srv.User, srv.Pass, func(o *WebDAVOptions) { o.CA = srv.CAFile })
	if _, err := w.Open(context.Background(), "t.bin"); err != nil {
		t.Fatalf("with ca: %v", err)
	}
	w = newDAV(t, srv.URL, srv.User, srv.Pass, nil)
	_, err := w.Open(context.Background(), "t.bin")
	if !errors.Is(err, ErrUnavailable) || !strings.Contains(err.Error(), "certificate") {
		t.Fatalf("without ca: got %v, want a certificate error", err)
	}
}

func TestWebDAVDown(t *testing.T) {
	addr := testenv.FreePort(t) // nothing listens there
	w := newDAV(t, "http://"+addr+"/", "u", "secret-pass", nil)
	_, err := w.Open(context.Background(), "a.bin")
	if !errors.Is(err, ErrUnavailable) {
		t.Fatalf("got %v, want ErrUnavailable", err)
	}
	noSecret(t, err, "secret-pass")
}

func TestNewWebDAVOptions(t *testing.T) {
	bad := []struct {
		o    WebDAVOptions
		want string
	}{
		{WebDAVOptions{URL: "ftp://x/"}, "scheme"},
		{WebDAVOptions{URL: "http://u:p@x/"}, "credentials"},
		{WebDAVOptions{URL: "http:///x"}, "no host"},
		{WebDAVOptions{URL: "http://x/?a=b"}, "query"},
		{WebDAVOptions{URL: "http://x/", Password: "pass:x"}, "password without username"},
		{WebDAVOptions{URL: "http://x/", Username: "u", Password: "plain"}, "no scheme"},
		{WebDAVOptions{URL: "https://x/", CA: "/nonexistent/ca.pem"}, "ca"},
		{WebDAVOptions{URL: "http://x/", CA: "/etc/hostname"}, "http://"},
	}
	for _, c := range bad {
		_, err := NewWebDAV(c.o)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%+v: got %v, want %q", c.o, err, c.want)
		}
		if err != nil && strings.Contains(err.Error(), "plain") {
			t.Errorf("error reveals an inline password: %v", err)
		}
	}
}
