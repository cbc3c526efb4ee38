// Package browsertest drives a real headless Chromium (Debian's chromium
// package, installed by ./scripts/test.sh) with chromedp for tests.
package browsertest

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"testing"

	"github.com/chromedp/chromedp"
)

// New starts a headless Chromium with a fresh profile and returns a
// browser context, cancelled when the test ends. It fails the test with a
// clear message if Chromium is not installed.
func New(tb testing.TB, width, height int) context.Context {
	tb.Helper()
	bin := ""
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			bin = p
			break
		}
	}
	if bin == "" {
		tb.Fatal("chromium is not installed: run ./scripts/test.sh (it installs Debian's chromium) or apt-get install chromium")
	}
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(bin),
		chromedp.UserDataDir(tb.TempDir()),
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.WindowSize(width, height),
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("no-first-run", true),
	)
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(actx)
	if err := chromedp.Do(ctx); err != nil {
		cancel()
		cancelAlloc()
		tb.Fatalf("start chromium: %v", err)
	}
	tb.Cleanup(func() { cancel(); cancelAlloc() })
	return ctx
}

// ArtifactPath returns where a test writes an artifact: $TICKSTREAM_ARTIFACTS,
// or artifacts/ at the repository root.
func ArtifactPath(name string) string {
	dir := os.Getenv("TICKSTREAM_ARTIFACTS")
	if dir == "" {
		_, file, _, _ := runtime.Caller(0)
		dir = filepath.Join(filepath.Dir(file), "..", "..", "artifacts")
	}
	_ = os.MkdirAll(dir, 0o755)
	return filepath.Join(dir, name)
}
