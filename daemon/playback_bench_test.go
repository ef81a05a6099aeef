package daemon

// Printed benchmarks of playback (go test -run NONE -bench Playback
// ./daemon/): the first byte of a 64 KiB range at 10%, 50% and 90% of a
// 1 GiB recording on the WebDAV server, next to decrypting the whole file
// (what a player waits for when the server decrypts everything first),
// and the peak RSS of 32 concurrent sessions. ENVELOPD_PLAYBACK_BENCH_MB
// changes the recording's size (default 1024).

import (
	"bufio"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/envelopd/envelopd/envelope"
)

// benchRecording writes a random recording of size bytes straight into
// the WebDAV directory (raw ciphertext, as a recorder would post it) and
// returns the body of a playback request for it.
func benchRecording(b *testing.B, e *playEnv, size int64) []byte {
	b.Helper()
	resp := e.do(b, "POST", "/v1/tenants/t/datakey", nil)
	var dkj dataKeyJSON
	if err := json.Unmarshal(readBody(b, resp), &dkj); err != nil {
		b.Fatal(err)
	}
	key, _ := base64.StdEncoding.DecodeString(dkj.Key)
	iv, _ := base64.StdEncoding.DecodeString(dkj.IV)
	c, _ := envelope.ParseCipher(dkj.Cipher)
	p := filepath.Join(e.dav.Dir, "bench", "big.mp3.bin")
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		b.Fatal(err)
	}
	f, err := os.Create(p)
	if err != nil {
		b.Fatal(err)
	}
	w, err := envelope.EncryptContent(f, &envelope.DataKey{Cipher: c, Key: key, IV: iv})
	if err != nil {
		b.Fatal(err)
	}
	if _, err := io.CopyN(w, rand.Reader, size); err != nil {
		b.Fatal(err)
	}
	if err := w.Close(); err != nil {
		b.Fatal(err)
	}
	if err := f.Close(); err != nil {
		b.Fatal(err)
	}
	body, _ := json.Marshal(map[string]string{"media": "/bench/big.mp3.bin", "envelope": dkj.Envelope, "content_type": "audio/mpeg"})
	return body
}

// benchSession creates a playback session.
func benchSession(b *testing.B, e *playEnv, req []byte) *playbackResponse {
	b.Helper()
	resp := e.do(b, "POST", "/v1/tenants/t/playback", req)
	body := readBody(b, resp)
	var pr playbackResponse
	if err := json.Unmarshal(body, &pr); err != nil || resp.StatusCode != http.StatusCreated {
		b.Fatalf("playback: %d %s", resp.StatusCode, body)
	}
	return &pr
}

func BenchmarkPlayback(b *testing.B) {
	mb := int64(1024)
	if v, err := strconv.ParseInt(os.Getenv("ENVELOPD_PLAYBACK_BENCH_MB"), 10, 64); err == nil && v > 0 {
		mb = v
	}
	size := mb << 20
	e := startPlayback(b, "")
	req := benchRecording(b, e, size)
	pr := benchSession(b, e, req)
	client := &http.Client{Transport: &http.Transport{Proxy: nil, MaxIdleConnsPerHost: 64}}
	get := func(off, n int64) (firstByte, total time.Duration) {
		req, _ := http.NewRequest("GET", e.tcp+pr.URL, nil)
		req.Header.Set("Range", fmt.Sprintf("bytes=%d-%d", off, off+n-1))
		start := time.Now()
		resp, err := client.Do(req)
		if err != nil {
			b.Fatal(err)
		}
		defer resp.Body.Close()
		var one [1]byte
		if _, err := io.ReadFull(resp.Body, one[:]); err != nil {
			b.Fatal(err)
		}
		firstByte = time.Since(start)
		k, err := io.Copy(io.Discard, resp.Body)
		if err != nil || k != n-1 || resp.StatusCode != http.StatusPartialContent {
			b.Fatalf("range %d+%d: %d, %d bytes, %v", off, n, resp.StatusCode, k+1, err)
		}
		return firstByte, time.Since(start)
	}
	results := map[string]string{}
	davClient := e.dav.Client()
	// The storage alone (the same range straight from rclone) and the
	// three positions through envelopd, interleaved in one loop so that
	// the machine's load falls on all alike.
	direct := func(off int64) time.Duration {
		req, _ := http.NewRequest("GET", e.dav.URL+"bench/big.mp3.bin", nil)
		req.SetBasicAuth(e.dav.User, e.dav.Pass)
		req.Header.Set("Range", fmt.Sprintf("bytes=%d-%d", off, off+64<<10-1))
		start := time.Now()
		resp, err := davClient.Do(req)
		if err != nil {
			b.Fatal(err)
		}
		defer resp.Body.Close()
		var one [1]byte
		io.ReadFull(resp.Body, one[:])
		d := time.Since(start)
		io.Copy(io.Discard, resp.Body)
		return d
	}
	b.Run("first-byte-of-64KiB", func(b *testing.B) {
		pcts := []int64{10, 50, 90}
		var sums [4]time.Duration
		for _, p := range pcts { // warm the connections
			get(pr.Size*p/100&^15, 64<<10)
		}
		direct(pr.Size * 9 / 10)
		b.ResetTimer()
		for range b.N {
			sums[0] += direct(pr.Size * 9 / 10)
			for i, p := range pcts {
				d, _ := get(pr.Size*p/100&^15, 64<<10)
				sums[i+1] += d
			}
		}
		ms := func(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 / float64(b.N) }
		b.ReportMetric(ms(sums[0]), "ms-rclone-direct-90%")
		for i, p := range pcts {
			b.ReportMetric(ms(sums[i+1]), fmt.Sprintf("ms-envelopd-%d%%", p))
			results[fmt.Sprint(p)] = fmt.Sprintf("first byte of 64 KiB at %d%% through envelopd: %.2f ms", p, ms(sums[i+1]))
		}
		results["0"] = fmt.Sprintf("first byte of 64 KiB at 90%% straight from rclone (no envelopd): %.2f ms", ms(sums[0]))
	})
	var whole time.Duration
	b.Run("whole-file", func(b *testing.B) {
		for range b.N {
			_, d := get(0, pr.Size)
			whole += d
		}
		whole /= time.Duration(b.N)
		b.ReportMetric(float64(whole.Milliseconds()), "ms-whole")
		b.ReportMetric(float64(pr.Size)/whole.Seconds()/1e6, "MB/s")
	})
	b.Run("32-sessions", func(b *testing.B) {
		sessions := make([]*playbackResponse, 32)
		for i := range sessions {
			sessions[i] = benchSession(b, e, req)
		}
		base := rssKiB("VmRSS")
		peak := base
		done := make(chan struct{})
		var wg sync.WaitGroup
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-done:
					return
				case <-time.After(20 * time.Millisecond):
					peak = max(peak, rssKiB("VmRSS"))
				}
			}
		}()
		b.ResetTimer()
		for range b.N {
			var rw sync.WaitGroup
			for i, s := range sessions {
				rw.Add(1)
				go func() {
					defer rw.Done()
					// Each player streams 16 MiB from its own place in
					// 1 MiB ranges, as a browser fetches ahead.
					off := pr.Size * int64(i) / 32 &^ 15
					for k := range int64(16) {
						req, _ := http.NewRequest("GET", e.tcp+s.URL, nil)
						req.Header.Set("Range", fmt.Sprintf("bytes=%d-%d", off+k<<20, off+(k+1)<<20-1))
						resp, err := client.Do(req)
						if err != nil {
							b.Error(err)
							return
						}
						io.Copy(io.Discard, resp.Body)
						resp.Body.Close()
					}
				}()
			}
			rw.Wait()
		}
		b.StopTimer()
		close(done)
		wg.Wait()
		b.ReportMetric(float64(peak-base)/1024, "MiB-RSS-growth")
		b.ReportMetric(float64(peak)/1024, "MiB-peak-RSS")
		results["z"] = fmt.Sprintf("32 sessions streaming 16 MiB each at once: peak RSS of the daemon's process %.0f MiB (%.0f MiB above idle)", float64(peak)/1024, float64(peak-base)/1024)
	})
	if whole > 0 {
		fmt.Printf("playback of a %d MiB recording on WebDAV (rclone on loopback):\n", mb)
		for _, k := range slices.Sorted(maps.Keys(results)) {
			fmt.Println("  " + results[k])
		}
		fmt.Printf("  decrypting the whole file: %.0f ms (what a player waits for when the server decrypts everything first)\n", float64(whole.Microseconds())/1000)
	}
}

// rssKiB reads a field (VmRSS, VmHWM) of /proc/self/status in KiB.
func rssKiB(field string) int64 {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), field+":"); ok {
			n, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			return n
		}
	}
	return 0
}
