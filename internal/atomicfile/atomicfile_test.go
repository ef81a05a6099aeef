package atomicfile

import (
	"os"
	"path/filepath"
	"testing"
)

func TestCommitAndAbort(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "out")
	if err := WriteFile(p, []byte("one"), 0o600); err != nil {
		t.Fatal(err)
	}
	f, err := Create(p, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	f.Write([]byte("partial"))
	f.Abort()
	if b, _ := os.ReadFile(p); string(b) != "one" {
		t.Fatalf("after abort: %q", b)
	}
	ents, _ := os.ReadDir(dir)
	if len(ents) != 1 {
		t.Fatalf("temp file left behind: %v", ents)
	}
	st, _ := os.Stat(p)
	if st.Mode().Perm() != 0o600 {
		t.Fatalf("mode %v", st.Mode())
	}
}

func TestRefusesSpecialFiles(t *testing.T) {
	if _, err := Create(os.DevNull, 0o600); err == nil {
		t.Fatal("Create accepted /dev/null")
	}
	if _, err := Create(t.TempDir(), 0o600); err == nil {
		t.Fatal("Create accepted a directory")
	}
	if st, err := os.Stat(os.DevNull); err != nil || st.Mode().IsRegular() {
		t.Fatalf("/dev/null damaged: %v %v", st, err)
	}
}

// TestCreateIn: a file appears in the root only on Commit; names cannot
// leave the root, not even through a symbolic link in it.
func TestCreateIn(t *testing.T) {
	dir, outside := t.TempDir(), t.TempDir()
	if err := os.Mkdir(filepath.Join(dir, "sub"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(outside, filepath.Join(dir, "escape")); err != nil {
		t.Fatal(err)
	}
	root, err := os.OpenRoot(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer root.Close()
	f, err := CreateIn(root, "sub/a.txt", 0o640)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteString("hello")
	if _, err := os.Stat(filepath.Join(dir, "sub/a.txt")); err == nil {
		t.Fatal("visible before Commit")
	}
	if err := f.Commit(); err != nil {
		t.Fatal(err)
	}
	if b, err := os.ReadFile(filepath.Join(dir, "sub/a.txt")); err != nil || string(b) != "hello" {
		t.Fatalf("%q, %v", b, err)
	}
	if st, _ := os.Stat(filepath.Join(dir, "sub/a.txt")); st.Mode().Perm() != 0o640 {
		t.Errorf("mode %v", st.Mode())
	}
	g, err := CreateIn(root, "sub/b.txt", 0o600)
	if err != nil {
		t.Fatal(err)
	}
	g.Abort()
	if ents, _ := os.ReadDir(filepath.Join(dir, "sub")); len(ents) != 1 {
		t.Fatalf("abort left %v", ents)
	}
	for _, name := range []string{"../x", "escape/x", "/etc/x"} {
		if f, err := CreateIn(root, name, 0o600); err == nil {
			f.Abort()
			t.Errorf("CreateIn(%q) was allowed", name)
		}
	}
	if ents, _ := os.ReadDir(outside); len(ents) != 0 {
		t.Fatalf("wrote outside the root: %v", ents)
	}
}
