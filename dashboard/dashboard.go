// Package dashboard holds the trader's web page and its assets, embedded in
// the binary so that a node serves it with no external network.
//
// Every text asset is embedded with its Brotli (.br) and gzip (.gz) forms,
// produced by go generate (run it after editing static/; a test fails when
// a form is stale), so a node sends compressed bytes without compressing.
package dashboard

//go:generate go run ./internal/precompress static

import (
	"embed"
	"io/fs"
)

//go:embed static
var static embed.FS

// FS returns the dashboard's files, rooted so that "index.html" is the page.
// "x.br" and "x.gz" are the compressed forms of "x".
func FS() fs.FS {
	sub, err := fs.Sub(static, "static")
	if err != nil {
		panic(err)
	}
	return sub
}
