package fanout

import (
	"fmt"
	"math/rand/v2"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tickstream/tickstream/internal/wait"
)

// lastSeq returns the seq of the newest update a sink received of sym.
func (r *recSink) lastSeq(sym string) uint64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	var last uint64
	for _, b := range r.got {
		for _, u := range b.Updates {
			if u.Sym == sym && u.Seq > last {
				last = u.Seq
			}
		}
	}
	return last
}

// TestNoWakeIsLost: conflated subscribers arming and being woken while
// ticks arrive one by one, on real timers, all end with the newest value:
// Publish's skip of a symbol nobody waits on (nwait) never loses the wake
// of a subscriber that armed meanwhile.
func TestNoWakeIsLost(t *testing.T) {
	// No heartbeat within the test: only Publish's wakes can bring the
	// newest value.
	h, err := New(Config{Symbols: []string{"A", "B"}, Writers: 2, Heartbeat: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = h.Close() })
	const subs, ticks = 20, 20_000
	sinks := make([]*recSink, subs)
	for i := range sinks {
		sinks[i] = &recSink{}
		syms := []string{"A"}
		if i%2 == 1 {
			syms = []string{"A", "B"}
		}
		s, _, _, err := h.Subscribe(Options{Symbols: syms, Interval: 0}, sinks[i])
		if err != nil {
			t.Fatal(err)
		}
		s.Start()
	}
	for seq := uint64(1); seq <= ticks; seq++ {
		h.Publish([]*Update{upd("A", seq)}, "c")
		if seq%64 == 0 {
			runtime.Gosched() // let subscribers arm between ticks
		}
	}
	wait.For(t, 30*time.Second, func() error {
		for i, r := range sinks {
			if got := r.lastSeq("A"); got != ticks {
				return fmt.Errorf("subscriber %d ends at A%d, want A%d", i, got, ticks)
			}
		}
		return nil
	})
}

// lastSink keeps the newest seq received per symbol.
type lastSink struct {
	mu   sync.Mutex
	last map[string]uint64
	done bool
}

func (r *lastSink) Send(b *Batch) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.last == nil {
		r.last = map[string]uint64{}
	}
	for _, u := range b.Updates {
		if u.Seq > r.last[u.Sym] || b.Resync {
			r.last[u.Sym] = u.Seq
		}
	}
	return nil
}

func (r *lastSink) Close(error) { r.mu.Lock(); r.done = true; r.mu.Unlock() }

func (r *lastSink) get(sym string) uint64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.last[sym]
}

// TestChurnLosesNoWake guards the wake under churn: while subscribers arm,
// change their symbols and unsubscribe concurrently with Publish, every live
// subscriber ends with the newest value of each of its final symbols, with no
// heartbeat to help.
func TestChurnLosesNoWake(t *testing.T) {
	syms := []string{"A", "B", "C", "D", "E"}
	h, err := New(Config{Symbols: syms, Writers: 3, Heartbeat: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = h.Close() })
	type slot struct {
		mu   sync.Mutex
		s    *Subscriber
		sink *lastSink
		set  []string
	}
	pick := func(r *rand.Rand) []string {
		var out []string
		for _, s := range syms {
			if r.IntN(2) == 0 {
				out = append(out, s)
			}
		}
		if len(out) == 0 {
			out = []string{syms[r.IntN(len(syms))]}
		}
		return out
	}
	const nslots = 60
	slots := make([]*slot, nslots)
	r0 := rand.New(rand.NewPCG(1, 1))
	sub := func(sl *slot, set []string) {
		sink := &lastSink{}
		s, snap, _, err := h.Subscribe(Options{Symbols: set}, sink)
		if err != nil {
			t.Error(err)
			return
		}
		for _, u := range snap {
			if u != nil {
				sink.Send(&Batch{Updates: []*Update{u}})
			}
		}
		sl.s, sl.sink, sl.set = s, sink, set
		s.Start()
	}
	for i := range slots {
		slots[i] = &slot{}
		sub(slots[i], pick(r0))
	}
	var seqs [5]uint64
	var stop atomic.Bool
	var wg sync.WaitGroup
	for g := range 3 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := rand.New(rand.NewPCG(uint64(g), 7))
			for !stop.Load() {
				sl := slots[r.IntN(nslots)]
				sl.mu.Lock()
				switch r.IntN(3) {
				case 0:
					sl.s.Close()
					sub(sl, pick(r))
				default:
					set := pick(r)
					if _, err := sl.s.Change(set, 0); err != nil {
						t.Error(err)
					}
					sl.set = set
				}
				sl.mu.Unlock()
				if r.IntN(4) == 0 {
					runtime.Gosched()
				}
			}
		}()
	}
	pub := func(n int) {
		r := rand.New(rand.NewPCG(9, 9))
		for k := range n {
			i := r.IntN(len(syms))
			seqs[i]++
			h.Publish([]*Update{upd(syms[i], seqs[i])}, "c")
			if k%32 == 0 {
				runtime.Gosched()
			}
		}
	}
	pub(200_000)
	stop.Store(true)
	wg.Wait()
	pub(2_000)
	// A final tick of every symbol.
	for i := range syms {
		seqs[i]++
		h.Publish([]*Update{upd(syms[i], seqs[i])}, "c")
	}
	wait.For(t, 20*time.Second, func() error {
		for i, sl := range slots {
			for _, s := range sl.set {
				k := 0
				for k = range syms {
					if syms[k] == s {
						break
					}
				}
				if got := sl.sink.get(s); got != seqs[k] {
					return fmt.Errorf("slot %d (%v, state %d, poke %v) ends at %s%d, want %s%d", i, sl.set, sl.s.state.Load(), sl.s.poke.Load(), s, got, s, seqs[k])
				}
			}
		}
		return nil
	})
}

// TestWakeRacingArmLeavesNoSubscriberAsleep guards the wake's handshake with
// arm: a wake (Publish's, after takeWaiters disarmed the subscriber) racing
// with arm's last steps, its failed CAS(Idle→Queued) and poke.Store(true)
// landing anywhere around arm's CAS(Flushing→Idle) and poke.Swap(false),
// never leaves the subscriber Idle with poke set and nobody queueing it.
func TestWakeRacingArmLeavesNoSubscriberAsleep(t *testing.T) {
	h, err := New(Config{Symbols: []string{"A"}, Writers: 1, Heartbeat: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	// Stop the hub's goroutines: this test plays the writer itself.
	h.cancel()
	h.wg.Wait()
	s, _, _, err := h.Subscribe(Options{Symbols: []string{"A"}}, &lastSink{})
	if err != nil {
		t.Fatal(err)
	}
	lost := 0
	const rounds = 200_000
	for i := range rounds {
		s.state.Store(stFlushing)
		s.poke.Store(false)
		race2(i%64, s.wake, 0, s.arm) // Publish's wake; the writer finishing service with nothing owed
		select {
		case <-h.ready:
			continue // queued: fine
		default:
		}
		if s.state.Load() == stIdle && s.poke.Load() {
			lost++
		}
	}
	if lost > 0 {
		t.Fatalf("%d of %d rounds: subscriber left Idle with poke set and not queued (a lost wake)", lost, rounds)
	}
}

// TestPublishRacingArmLeavesNoSubscriberAsleep guards the same handshake
// through the real Publish: while the writer finishes a service with nothing
// owed (arm), Publish stores a newer tick, disarms the subscriber
// (takeWaiters) and wakes it; no round ends with the subscriber Idle,
// disarmed, owing the new tick and not queued (where only a heartbeat would
// serve it).
func TestPublishRacingArmLeavesNoSubscriberAsleep(t *testing.T) {
	h, err := New(Config{Symbols: []string{"A"}, Writers: 1, Heartbeat: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	h.cancel() // this test plays the writer
	h.wg.Wait()
	s, _, _, err := h.Subscribe(Options{Symbols: []string{"A"}}, &lastSink{})
	if err != nil {
		t.Fatal(err)
	}
	st := h.syms["A"]
	lost := 0
	const rounds = 200_000
	var seq uint64
	for i := range rounds {
		s.sent[0] = seq // everything so far was sent
		s.state.Store(stFlushing)
		s.poke.Store(false)
		seq++
		u := upd("A", seq)
		race2(i%16, func() { h.Publish([]*Update{u}, "c") }, (i/16)%16, s.arm)
		queued := false
		for {
			select {
			case <-h.ready:
				queued = true
				continue
			default:
			}
			break
		}
		st.mu.Lock()
		_, armed := st.waiters[s]
		clear(st.waiters)
		st.nwait.Store(0)
		st.mu.Unlock()
		if !queued && !armed && s.state.Load() == stIdle && s.sent[0] < seq {
			lost++
		}
	}
	if lost > 0 {
		t.Fatalf("%d of %d rounds: the subscriber owes A%d-type ticks, is Idle, disarmed and not queued (poke=true left behind): a lost wake", lost, rounds, seq)
	}
}

// race2 runs f and g on two goroutines released together, after delaying
// each by a few atomic adds (df and dg: the tests sweep the interleavings),
// and returns when both did. The start spins, yielding after a while so
// that it ends on a loaded machine.
func race2(df int, f func(), dg int, g func()) {
	var ready, sink atomic.Int32
	var wg sync.WaitGroup
	run := func(delay int, fn func()) {
		defer wg.Done()
		ready.Add(1)
		for k := 0; ready.Load() < 2; k++ {
			if k > 1000 {
				runtime.Gosched() // the other is not running: let it
			}
		}
		for range delay {
			sink.Add(1)
		}
		fn()
	}
	wg.Add(2)
	go run(df, f)
	go run(dg, g)
	wg.Wait()
}
