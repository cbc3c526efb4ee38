package loadgen_test

import (
	"bytes"
	"context"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/tickstream/tickstream/internal/bintest"
	"github.com/tickstream/tickstream/internal/tooltest"
)

// TestScaleSmoke runs a small version of the headline scenario through the
// real binary: 20,000 SSE subscribers on 2 nodes and 2 load-generator
// processes for 15 s. No timing assertion: every subscriber connected and
// received data, and nothing errored.
func TestScaleSmoke(t *testing.T) {
	if testing.Short() {
		t.Skip("the scale smoke test takes ~30 s; run without -short")
	}
	tooltest.Path(t, "redis-server", "redis-server") // loadgen starts its own
	bin := bintest.Tickstream(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, "loadgen", "--subscribers", "20000", "--nodes", "2", "--workers", "2",
		"--universe", "500", "--rate", "5000", "--duration", "15s", "--connect-rate", "10000")
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	t.Logf("%s", out.String())
	if err != nil {
		t.Fatalf("loadgen: %v\n%s", err, tail(errOut.String(), 3000))
	}
	for _, want := range []string{"connected            20000 of 20000", "errors, reconnects   0, 0"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("report lacks %q", want)
		}
	}
	if strings.Contains(out.String(), "receiving (minimum)  0\n") {
		t.Error("some second had no subscriber receiving")
	}
}

func tail(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}
