package transport

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io/fs"
	"mime"
	"path"
	"strings"

	"github.com/gofiber/fiber/v2"
)

// asset is one file of the dashboard with its precompressed forms.
type asset struct {
	body, br, gz []byte
	etag         string // strong, of body; the compressed forms add -br / -gz
	ctype        string
	cache        string
}

// staticFiles serves the dashboard from memory: the Brotli or gzip form
// that go generate ./dashboard produced, chosen by Accept-Encoding (Vary),
// with a strong ETag per form and 304 on If-None-Match. The vendored
// library (vendor/, referenced with its version in the URL) is cached for a
// year; every other file is revalidated on each use (no-cache + ETag).
type staticFiles struct {
	files map[string]*asset // by URL path, "/" for index.html
}

// newStatic loads every file of fsys; "x.br" and "x.gz" are the
// compressed forms of "x", not files of their own.
func newStatic(fsys fs.FS) (*staticFiles, error) {
	st := &staticFiles{files: make(map[string]*asset)}
	err := fs.WalkDir(fsys, ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || strings.HasSuffix(p, ".br") || strings.HasSuffix(p, ".gz") {
			return err
		}
		a := &asset{cache: "no-cache"}
		if a.body, err = fs.ReadFile(fsys, p); err != nil {
			return err
		}
		a.br, _ = fs.ReadFile(fsys, p+".br")
		a.gz, _ = fs.ReadFile(fsys, p+".gz")
		sum := sha256.Sum256(a.body)
		a.etag = hex.EncodeToString(sum[:12])
		a.ctype = mime.TypeByExtension(path.Ext(p))
		if a.ctype == "" {
			a.ctype = "text/plain; charset=utf-8"
		}
		if strings.HasPrefix(p, "vendor/") {
			a.cache = "public, max-age=31536000, immutable"
		}
		st.files["/"+p] = a
		if p == "index.html" {
			st.files["/"] = a
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("load dashboard: %w", err)
	}
	return st, nil
}

// handle serves GET and HEAD of a dashboard file; anything else goes on.
func (st *staticFiles) handle(c *fiber.Ctx) error {
	if c.Method() != fiber.MethodGet && c.Method() != fiber.MethodHead {
		return c.Next()
	}
	a := st.files[c.Path()]
	if a == nil {
		return c.Next()
	}
	body, etag, enc := a.body, a.etag, ""
	switch ae := c.Get(fiber.HeaderAcceptEncoding); {
	case a.br != nil && accepts(ae, "br"):
		body, etag, enc = a.br, a.etag+"-br", "br"
	case a.gz != nil && accepts(ae, "gzip"):
		body, etag, enc = a.gz, a.etag+"-gz", "gzip"
	}
	etag = `"` + etag + `"`
	c.Set(fiber.HeaderVary, fiber.HeaderAcceptEncoding)
	c.Set(fiber.HeaderCacheControl, a.cache)
	c.Set(fiber.HeaderETag, etag)
	if matchETag(c.Get(fiber.HeaderIfNoneMatch), etag) {
		return c.SendStatus(fiber.StatusNotModified)
	}
	c.Set(fiber.HeaderContentType, a.ctype)
	if enc != "" {
		c.Set(fiber.HeaderContentEncoding, enc)
	}
	return c.Send(body)
}

// accepts reports whether an Accept-Encoding value allows coding (present,
// or "*", without q=0).
func accepts(header, coding string) bool {
	for _, part := range strings.Split(header, ",") {
		name, params, _ := strings.Cut(strings.TrimSpace(part), ";")
		name = strings.TrimSpace(name)
		if !strings.EqualFold(name, coding) && name != "*" {
			continue
		}
		q := strings.ReplaceAll(strings.ToLower(params), " ", "")
		if strings.HasPrefix(q, "q=0") && strings.Trim(strings.TrimPrefix(q, "q=0"), ".0") == "" {
			return false
		}
		return true
	}
	return false
}

// matchETag reports whether an If-None-Match value names etag (weak
// comparison, as RFC 9110 asks for If-None-Match) or is "*".
func matchETag(header, etag string) bool {
	if header == "" {
		return false
	}
	for _, t := range strings.Split(header, ",") {
		t = strings.TrimPrefix(strings.TrimSpace(t), "W/")
		if t == etag || t == "*" {
			return true
		}
	}
	return false
}

// mustStatic is newStatic for the embedded dashboard, whose files are
// known good: an error is a build mistake.
func mustStatic(fsys fs.FS) *staticFiles {
	st, err := newStatic(fsys)
	if err != nil {
		panic(err)
	}
	return st
}
