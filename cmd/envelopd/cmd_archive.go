package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/envelopd/envelopd/internal/progress"
	"github.com/envelopd/envelopd/recording"
)

func init() {
	register(&command{name: "archive", summary: "list, verify, decrypt or re-key a zip archive of recordings", run: runArchive})
}

const archiveUsage = `usage: envelopd archive <list|verify|decrypt|rekey> ARCHIVE [flags]

  list    ARCHIVE [KEYS]                   tenant, cipher and recipients of each recording,
                                           and whether a key given opens it
  verify  ARCHIVE KEYS                     decrypt everything, check padding or tag, write nothing
  decrypt ARCHIVE KEYS -out DIR|FILE       plaintext media under the same names (".bin" removed),
                                           recording.json kept as it is
  rekey   ARCHIVE KEYS -out FILE|DIR (-cert FILE ... | -socket FILE -tenant NAME) [-keep-old]
                                           every envelope re-wrapped, the media not re-encrypted

KEYS, as for decrypt: -key FILE [-cert FILE] [-pass SPEC] | -keystore FILE [-pass SPEC] |
-socket FILE (the daemon unwraps; the AES work stays here). In rekey the
certificate of a -key is -key-cert, since -cert names the new recipients.

ARCHIVE is a zip (zip64 too) laid out as {cc}/{tenant}/{yyyy-mm-dd}/{id}/recording.json
plus media, or a flat zip of PKCS#7 media (lifecycle backups). Media are complete
PKCS#7 files (DER, BER, PEM) or raw ciphertext whose envelope is in recording.json.
Recordings are processed in parallel; one that fails does not stop the others: a
summary names each failure, -json prints a report, and the exit status is 1.
Run "envelopd archive <subcommand> -h" for the flags.
`

func runArchive(ctx context.Context, env *cliEnv, args []string) error {
	subs := []subcommand{
		{"list", func(ctx context.Context, env *cliEnv, args []string) error {
			return runArchiveOp(ctx, env, recording.List, args)
		}},
		{"verify", func(ctx context.Context, env *cliEnv, args []string) error {
			return runArchiveOp(ctx, env, recording.Verify, args)
		}},
		{"decrypt", func(ctx context.Context, env *cliEnv, args []string) error {
			return runArchiveOp(ctx, env, recording.Decrypt, args)
		}},
		{"rekey", func(ctx context.Context, env *cliEnv, args []string) error {
			return runArchiveOp(ctx, env, recording.Rekey, args)
		}},
	}
	return runSubcommand(ctx, env, "archive", archiveUsage, subs, args)
}

// parseInterspersed parses flags before and after the one positional
// argument (the archive), as "archive decrypt ARCHIVE -out DIR" writes it.
func parseInterspersed(fs *flag.FlagSet, args []string) (string, error) {
	var pos []string
	for {
		if err := parseQuiet(fs, args); err != nil {
			return "", err
		}
		if fs.NArg() == 0 {
			break
		}
		pos = append(pos, fs.Arg(0))
		args = fs.Args()[1:]
	}
	switch len(pos) {
	case 0:
		return "", usageErr(fs, "which archive? give its file name")
	case 1:
		return pos[0], nil
	}
	return "", usageErr(fs, "one archive at a time (got %q and %q)", pos[0], pos[1])
}

func runArchiveOp(ctx context.Context, env *cliEnv, op recording.Op, args []string) error {
	name := "archive " + op.String()
	synopsis := map[recording.Op]string{
		recording.List:    "ARCHIVE [KEYS] [-json]",
		recording.Verify:  "ARCHIVE KEYS [-json] [-q] [-j N]",
		recording.Decrypt: "ARCHIVE KEYS -out DIR|FILE [-resume] [-json] [-q] [-j N]",
		recording.Rekey:   "ARCHIVE KEYS -out FILE|DIR (-cert FILE ... | -tenant NAME) [-keep-old] [-resume] [-json] [-q] [-j N]",
	}[op] + "\n\nKEYS: -key FILE [-" + map[bool]string{true: "key-cert", false: "cert"}[op == recording.Rekey] + " FILE] [-pass SPEC] | -keystore FILE [-pass SPEC] | -socket FILE"
	fs := newFlagSet(env, name, synopsis)
	var kf keyFlags
	var rf recipientFlags
	if op == recording.Rekey {
		kf.register(fs, "key-cert")
		rf.register(fs)
	} else {
		kf.register(fs, "cert")
	}
	var out *string
	var resume *bool
	if op == recording.Decrypt || op == recording.Rekey {
		out = fs.String("out", "", "output directory `DIR`, or a zip file when it ends in .zip")
		resume = fs.Bool("resume", false, "skip outputs that are already complete (from an earlier run)")
	}
	jsonOut := fs.Bool("json", false, "print a machine-readable report on stdout")
	quiet := fs.Bool("q", false, "no progress bar and no summary, only errors")
	workers := fs.Int("j", 0, "`N` recordings processed at once (default: the number of CPUs)")
	var lim recording.Limits
	fs.IntVar(&lim.MaxEntries, "max-entries", recording.DefaultMaxEntries, "refuse archives with more entries than `N`")
	fs.Int64Var(&lim.MaxTotalSize, "max-size", recording.DefaultMaxTotalSize, "refuse archives that expand to more than `BYTES`")
	fs.Int64Var(&lim.MaxRatio, "max-ratio", recording.DefaultMaxRatio, "refuse entries over 1 MiB that expand more than `N` times")
	tempDir := fs.String("tmp", "", "`DIR` where AES-GCM content is staged while it is authenticated (default: the system's)")
	path, err := parseInterspersed(fs, args)
	if err != nil {
		return err
	}

	job := &recording.Job{Op: op, Workers: *workers, TempDir: *tempDir}
	var keys *keyOpener
	switch op {
	case recording.List:
		if kf.given() {
			if err := kf.check(name); err != nil {
				return err
			}
			if keys, err = kf.open(ctx, env); err != nil {
				return err
			}
		}
	case recording.Verify, recording.Decrypt:
		if err := kf.check(name); err != nil {
			return err
		}
		if keys, err = kf.open(ctx, env); err != nil {
			return err
		}
	case recording.Rekey:
		rw, k, err := rf.rewrapper(ctx, env, &kf, name)
		if err != nil {
			return err
		}
		keys, job.Rewrapper = k, rw
	}
	if keys != nil {
		defer keys.close()
		job.Keys = keys
		job.Describe = keys.describe
	}
	if out != nil {
		if *out == "" {
			return fmt.Errorf("%s needs -out DIR or -out NEW.zip", name)
		}
		if same(*out, path) {
			return errors.New("-out is the archive itself; write to a new file or directory")
		}
		job.Resume = *resume
	}

	a, err := recording.Open(path, &lim)
	if err != nil {
		return err
	}
	defer a.Close()

	if out != nil {
		o, err := openArchiveOutput(*out, op, *resume)
		if err != nil {
			return err
		}
		job.Out = o
		defer o.Abort()
	}

	var bar *progress.Bar
	if op != recording.List {
		bar = progress.New(env.stderr, progress.Options{Description: op.String(), Items: int64(len(a.Recordings)), Bytes: a.Size, Quiet: *quiet})
		job.Progress = bar.Add
	}
	// Except for list (a table), reports are streamed: memory does not
	// grow with the number of recordings.
	var js *jsonItems
	if op != recording.List {
		if *jsonOut {
			js = &jsonItems{w: env.stdout}
			job.OnItem = js.add
		} else {
			job.OnItem = func(recording.RecordingReport) {}
		}
	}
	start := time.Now()
	rep, runErr := a.Run(ctx, job)
	bar.Finish()
	if rep == nil {
		return runErr
	}
	if job.Out != nil {
		if err := job.Out.Close(); err != nil {
			return fmt.Errorf("cannot finish the output %s: %w", *out, err)
		}
	}
	switch {
	case js != nil:
		if err := js.finish(rep); err != nil {
			return err
		}
	case *jsonOut:
		enc := json.NewEncoder(env.stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(rep); err != nil {
			return err
		}
	case op == recording.List:
		printArchiveList(env, rep, keys != nil)
	}
	if !*quiet || rep.Failed > 0 {
		printArchiveSummary(env, rep, time.Since(start), *quiet)
	}
	if runErr != nil {
		return runErr
	}
	if rep.Failed > 0 {
		return fmt.Errorf("%s: %d of %d recordings failed (listed above)", name, rep.Failed, rep.OK+rep.Failed+rep.Skipped)
	}
	return nil
}

// jsonItems writes a report as JSON while the recordings are processed:
// {"items": [one item a line, ...], "archive": ..., "ok": ..., ...}.
type jsonItems struct {
	w   io.Writer
	n   int
	err error
}

func (j *jsonItems) add(it recording.RecordingReport) {
	b, err := json.Marshal(it)
	if err != nil {
		j.err = err
		return
	}
	sep := ",\n  "
	if j.n == 0 {
		sep = "{\"items\": [\n  "
	}
	j.n++
	if _, err := fmt.Fprintf(j.w, "%s%s", sep, b); err != nil && j.err == nil {
		j.err = err
	}
}

func (j *jsonItems) finish(rep *recording.Report) error {
	if j.err != nil {
		return j.err
	}
	r := *rep
	r.Items = nil
	b, err := json.Marshal(r)
	if err != nil {
		return err
	}
	// b is {"archive":...,"items":null}: drop the items member.
	b = bytes.Replace(b, []byte(`,"items":null`), nil, 1)
	head := "{\"items\": [],\n"
	if j.n > 0 {
		head = "\n],\n"
	}
	_, err = fmt.Fprintf(j.w, "%s%s\n", head, b[1:])
	return err
}

func plural(n int, what string) string {
	if n == 1 {
		return "1 " + what
	}
	return fmt.Sprintf("%d %ss", n, what)
}

// same reports whether a and b name the same file.
func same(a, b string) bool {
	sa, err1 := os.Stat(a)
	sb, err2 := os.Stat(b)
	if err1 == nil && err2 == nil {
		return os.SameFile(sa, sb)
	}
	aa, _ := filepath.Abs(a)
	ab, _ := filepath.Abs(b)
	return aa == ab
}

func openArchiveOutput(out string, op recording.Op, resume bool) (recording.Output, error) {
	st, err := os.Stat(out)
	isDir := err == nil && st.IsDir()
	if !isDir && strings.EqualFold(filepath.Ext(out), ".zip") {
		if err == nil && !st.Mode().IsRegular() {
			return nil, fmt.Errorf("-out %s is not a regular file", out)
		}
		if err == nil && !resume {
			return nil, fmt.Errorf("-out %s exists; remove it, or add -resume to keep what it holds", out)
		}
		o, err := recording.NewZipOutput(out, resume)
		if err != nil {
			return nil, fmt.Errorf("cannot create -out %s: %w", out, err)
		}
		return o, nil
	}
	if err == nil && !isDir {
		return nil, fmt.Errorf("-out %s exists and is not a directory (a zip output must end in .zip)", out)
	}
	perm := os.FileMode(0o600) // plaintext recordings
	if op == recording.Rekey {
		perm = 0o644
	}
	o, err := recording.NewDirOutput(out, perm)
	if err != nil {
		return nil, fmt.Errorf("cannot create -out %s: %w", out, err)
	}
	return o, nil
}

func printArchiveSummary(env *cliEnv, rep *recording.Report, d time.Duration, quiet bool) {
	w := env.stderr
	if !quiet {
		secs := d.Seconds()
		rate := ""
		if secs > 0 && rep.Operation != "list" {
			rate = fmt.Sprintf(", %.1f recordings/s, %.1f MB/s", float64(rep.OK)/secs, float64(rep.Bytes)/1e6/secs)
		}
		fmt.Fprintf(w, "envelopd: archive %s: %s: %d ok, %d skipped, %d failed (%.1f MB in %.1f s%s)\n",
			rep.Operation, plural(rep.OK+rep.Failed+rep.Skipped, "recording"), rep.OK, rep.Skipped, rep.Failed, float64(rep.Bytes)/1e6, secs, rate)
	}
	for _, f := range rep.Failures() {
		fmt.Fprintf(w, "  FAILED %s\n", oneLine(f))
	}
}

func printArchiveList(env *cliEnv, rep *recording.Report, withKeys bool) {
	tw := tabwriter.NewWriter(env.stdout, 2, 8, 2, ' ', 0)
	fmt.Fprintln(tw, "RECORDING\tTENANT\tFILES\tCIPHER\tRECIPIENTS\tKEY HERE\tSTATUS")
	for _, it := range rep.Items {
		ciphers, recips := map[string]bool{}, map[string]bool{}
		media, yes, no := 0, 0, 0
		for _, f := range it.Files {
			if f.Kind == "metadata" {
				continue
			}
			media++
			if f.Cipher != "" {
				ciphers[f.Cipher] = true
			}
			for _, r := range f.Recipients {
				recips[r] = true
			}
			if f.KeyHere != nil {
				if *f.KeyHere {
					yes++
				} else {
					no++
				}
			}
		}
		key := "-"
		switch {
		case !withKeys:
		case yes > 0 && no == 0:
			key = "yes"
		case yes > 0:
			key = fmt.Sprintf("%d of %d", yes, yes+no)
		case no > 0:
			key = "no"
		}
		status := it.Status
		if it.Status == recording.StatusFailed {
			status = "FAILED"
		}
		tenant := it.Tenant
		if tenant == "" {
			tenant = "-"
		}
		fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%s\t%s\t%s\n", it.Name, tenant, media, joinKeys(ciphers), joinKeys(recips), key, status)
	}
	tw.Flush()
}

func joinKeys(m map[string]bool) string {
	if len(m) == 0 {
		return "-"
	}
	var ks []string
	for k := range m {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return strings.Join(ks, "; ")
}
