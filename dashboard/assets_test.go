package dashboard_test

import (
	"bytes"
	"compress/gzip"
	"io"
	"io/fs"
	"path"
	"testing"

	brotli "github.com/molecule-man/go-brrr"

	"github.com/tickstream/tickstream/dashboard"
)

// TestCompressedFormsAreCurrent: every text asset has a Brotli and a gzip
// form that decompress to it (go generate ./dashboard writes them).
func TestCompressedFormsAreCurrent(t *testing.T) {
	fsys := dashboard.FS()
	n := 0
	err := fs.WalkDir(fsys, ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		switch path.Ext(p) {
		case ".html", ".js", ".css":
		default:
			return nil
		}
		n++
		raw, _ := fs.ReadFile(fsys, p)
		br, err1 := fs.ReadFile(fsys, p+".br")
		gz, err2 := fs.ReadFile(fsys, p+".gz")
		if err1 != nil || err2 != nil {
			t.Errorf("%s: compressed forms missing (run go generate ./dashboard): %v %v", p, err1, err2)
			return nil
		}
		if plain, err := brotli.Decompress(br); err != nil || !bytes.Equal(plain, raw) {
			t.Errorf("%s.br is stale (run go generate ./dashboard): %v", p, err)
		}
		zr, err := gzip.NewReader(bytes.NewReader(gz))
		if err == nil {
			var plain []byte
			if plain, err = io.ReadAll(zr); err == nil && !bytes.Equal(plain, raw) {
				t.Errorf("%s.gz is stale (run go generate ./dashboard)", p)
			}
		}
		if err != nil {
			t.Errorf("%s.gz: %v", p, err)
		}
		t.Logf("%s: %d bytes, br %d, gzip %d", p, len(raw), len(br), len(gz))
		return nil
	})
	if err != nil || n < 4 {
		t.Fatalf("walked %d assets: %v", n, err)
	}
}
