// Package wait polls a condition in tests instead of sleeping. It imports
// nothing of tickstream's, so any package's tests can use it.
package wait

import (
	"testing"
	"time"
)

// For polls cond every few milliseconds until it returns nil, and fails
// the test with cond's last error if timeout passes first.
func For(tb testing.TB, timeout time.Duration, cond func() error) {
	tb.Helper()
	deadline := time.Now().Add(timeout)
	for {
		err := cond()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			tb.Fatal(err)
		}
		time.Sleep(3 * time.Millisecond)
	}
}
