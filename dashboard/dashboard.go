// Package dashboard holds the trader's web page and its assets, embedded in
// the binary so that a node serves it with no external network.
package dashboard

import (
	"embed"
	"io/fs"
)

//go:embed static
var static embed.FS

// FS returns the dashboard's files, rooted so that "index.html" is the page.
func FS() fs.FS {
	sub, err := fs.Sub(static, "static")
	if err != nil {
		panic(err)
	}
	return sub
}
