// Package browsertest drives a real headless Chromium (Debian's chromium
// package, installed by ./scripts/test.sh) with chromedp for tests.
package browsertest

import (
	"context"
	"os"
	"path/filepath"
	"runtime"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/tickstream/tickstream/internal/tooltest"
)

// New starts a headless Chromium with a fresh profile and returns a
// browser context, cancelled when the test ends. If Chromium is not
// installed it skips the test naming the Debian package (fails it when
// tooltest.RequireEnv is set). extra adds flags, e.g.
// IgnoreCertErrors.
func New(tb testing.TB, width, height int, extra ...chromedp.ExecAllocatorOption) context.Context {
	tb.Helper()
	bin := tooltest.Path(tb, "chromium", "chromium", "chromium-browser", "google-chrome")
	// The profile is not in tb.TempDir: Chromium's helper processes (the
	// crash handler, a renderer) may still write into it for a moment after
	// the browser is gone, and TempDir's cleanup then fails the test.
	profile, err := os.MkdirTemp("", "tickstream-chromium-")
	if err != nil {
		tb.Fatal(err)
	}
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(bin),
		chromedp.UserDataDir(profile),
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.WindowSize(width, height),
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("no-first-run", true),
	)
	opts = append(opts, extra...)
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(actx)
	if err := chromedp.Do(ctx); err != nil {
		cancel()
		cancelAlloc()
		removeProfile(profile)
		tb.Fatalf("start chromium: %v", err)
	}
	tb.Cleanup(func() { cancel(); cancelAlloc(); removeProfile(profile) })
	return ctx
}

// removeProfile removes a Chromium profile directory, trying again for a
// few seconds while the browser's last helper processes still write to it.
func removeProfile(dir string) {
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		if err := os.RemoveAll(dir); err == nil || time.Now().After(deadline) {
			return
		}
	}
}

// IgnoreCertErrors makes Chromium accept any certificate: for a test
// proxy's self-signed one.
var IgnoreCertErrors = chromedp.Flag("ignore-certificate-errors", true)

// NewTab opens another tab in browser (a context from New) and returns its
// context, closed when the test ends.
func NewTab(tb testing.TB, browser context.Context) context.Context {
	tb.Helper()
	ctx, cancel := chromedp.NewContext(browser)
	if err := chromedp.Do(ctx); err != nil {
		cancel()
		tb.Fatalf("open a tab: %v", err)
	}
	tb.Cleanup(cancel)
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
