// Command precompress writes a Brotli (.br) and a gzip (.gz) form beside
// every text asset of a directory, for a server that picks one by
// Accept-Encoding. It is run by go generate in package dashboard; a test
// there fails when a form is missing or stale.
//
//	go run ./internal/precompress static
package main

import (
	"bytes"
	"compress/gzip"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	brotli "github.com/molecule-man/go-brrr"
)

// Compressible reports whether a file is compressed: text assets only.
func Compressible(name string) bool {
	switch filepath.Ext(name) {
	case ".html", ".js", ".css", ".svg", ".json":
		return true
	}
	return false
}

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: precompress DIR")
		os.Exit(2)
	}
	if err := run(os.Args[1]); err != nil {
		fmt.Fprintln(os.Stderr, "precompress:", err)
		os.Exit(1)
	}
}

func run(dir string) error {
	return filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || !Compressible(p) || strings.HasSuffix(p, ".br") || strings.HasSuffix(p, ".gz") {
			return err
		}
		raw, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		br, err := brotli.Compress(raw, brotli.BestCompression)
		if err != nil {
			return fmt.Errorf("brotli %s: %w", p, err)
		}
		var gz bytes.Buffer
		w, _ := gzip.NewWriterLevel(&gz, gzip.BestCompression) // no name, no time: reproducible
		if _, err := w.Write(raw); err != nil {
			return err
		}
		if err := w.Close(); err != nil {
			return err
		}
		if err := os.WriteFile(p+".br", br, 0o644); err != nil {
			return err
		}
		if err := os.WriteFile(p+".gz", gz.Bytes(), 0o644); err != nil {
			return err
		}
		fmt.Printf("%s: %d bytes, br %d, gzip %d\n", p, len(raw), len(br), gz.Len())
		return nil
	})
}
