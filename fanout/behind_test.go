package fanout

import (
	"fmt"
	"testing"
	"time"

	"github.com/tickstream/tickstream/internal/wait"
)

// gateSink holds its writer in Send until the gate opens, then records
// how many updates it was sent.
type gateSink struct {
	recSink
	gate chan struct{}
}

func (g *gateSink) Send(b *Batch) error {
	<-g.gate
	return g.recSink.Send(b)
}

func (g *gateSink) updates() int {
	n := 0
	for _, b := range g.batches() {
		n += len(b.Updates)
	}
	return n
}

// TestRawBehind: the hub says a raw subscriber is behind once, after a
// Publish, it owes more than half its queue, whether it has a queue of its
// own (one symbol) or reads the shared log (two of three), and no longer
// once its writer has taken what it owed; a conflated subscriber never
// counts.
func TestRawBehind(t *testing.T) {
	for _, syms := range [][]string{{"A"}, {"A", "B"}} {
		t.Run(fmt.Sprint(len(syms), " symbols"), func(t *testing.T) {
			h := newTestHub(t, &fakeClock{now: time.Unix(1000, 0)}, func(c *Config) { c.RawQueue = 16 })
			conflated := &recSink{}
			c, _, _, err := h.Subscribe(Options{Symbols: []string{"A"}}, conflated)
			if err != nil {
				t.Fatal(err)
			}
			c.Start()
			seq := uint64(0)
			publish := func(n int) {
				batch := make([]*Update, n)
				for i := range batch {
					seq++
					batch[i] = upd("A", seq)
				}
				h.Publish(batch, fmt.Sprint("c", seq))
			}
			publish(12)
			if h.RawBehind() {
				t.Fatal("behind with no raw subscriber")
			}
			g := &gateSink{gate: make(chan struct{})}
			s, _, _, err := h.Subscribe(Options{Symbols: syms, Mode: Raw}, g)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() {
				select {
				case <-g.gate:
				default:
					close(g.gate) // the hub's Close waits for its writers
				}
			})
			s.Start() // its writer takes what it owes and waits in Send from now on
			publish(4)
			if h.RawBehind() {
				t.Fatal("behind owing 4 of a queue of 16")
			}
			publish(10) // owes at least these 10 (the writer may hold the first 4)
			if !h.RawBehind() {
				t.Fatal("not behind owing 10 or more of a queue of 16")
			}
			close(g.gate)
			wait.For(t, 5*time.Second, func() error {
				if n := g.updates(); n < 14 {
					return fmt.Errorf("the subscriber has %d of its 14 ticks", n)
				}
				return nil
			})
			publish(1)
			if h.RawBehind() {
				t.Fatalf("still behind once its writer took everything (closed: %v)", g.closed)
			}
		})
	}
}
