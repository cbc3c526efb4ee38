package fanout

import (
	"fmt"
	"runtime"
	"strconv"
	"sync/atomic"
	"testing"
	"time"
)

// discardSink counts what it is sent, as a socket that never blocks.
type discardSink struct {
	updates *atomic.Int64
	bytes   *atomic.Int64
}

func (d discardSink) Send(b *Batch) error {
	n := 0
	for _, u := range b.Updates {
		n += len(u.JSON)
	}
	d.updates.Add(int64(len(b.Updates)))
	d.bytes.Add(int64(n))
	return nil
}
func (discardSink) Close(error) {}

func benchSymbols(n int) []string {
	s := make([]string, n)
	for i := range s {
		s[i] = "S" + strconv.Itoa(i)
	}
	return s
}

func benchUpdates(syms []string, rounds int) [][]*Update {
	out := make([][]*Update, rounds)
	for r := range out {
		for _, s := range syms {
			out[r] = append(out[r], &Update{Sym: s, Seq: uint64(r + 1), TS: time.Now().UnixMicro(),
				JSON: []byte(`{"sym":"` + s + `","seq":` + strconv.Itoa(r+1) + `,"bid":"189.42","ask":"189.44","last":"189.43","size":200,"ts":1764180000123456}`)})
		}
	}
	return out
}

// subscribeN adds n conflated subscribers of 10 symbols each, spread over
// the universe, started and caught up.
func subscribeN(b *testing.B, h *Hub, syms []string, n int, ivl time.Duration, sink Sink) []*Subscriber {
	subs := make([]*Subscriber, n)
	for i := range subs {
		mine := make([]string, 10)
		for j := range mine {
			mine[j] = syms[(i*7+j*31)%len(syms)]
		}
		s, _, _, err := h.Subscribe(Options{Symbols: mine, Interval: ivl}, sink)
		if err != nil {
			b.Fatal(err)
		}
		s.Start()
		subs[i] = s
	}
	return subs
}

// BenchmarkPublish is the cost of one tick on the hub's hot path with 1k,
// 10k and 100k conflated subscribers (10 symbols each, 1s interval, 500
// symbols). It must stay flat as subscribers grow: a tick touches only its
// symbol, never the subscribers that watch it.
func BenchmarkPublish(b *testing.B) {
	syms := benchSymbols(500)
	for _, n := range []int{1000, 10_000, 100_000} {
		b.Run(fmt.Sprintf("subscribers=%d", n), func(b *testing.B) {
			var delivered, bytes atomic.Int64
			// Manual timers: after their first write the subscribers sleep
			// out their interval for the whole run, so what is timed is the
			// tick's own path and nothing else competes for the cores.
			h, err := New(Config{Symbols: syms, MaxSubscribers: n, Writers: 4, manualTimers: true})
			if err != nil {
				b.Fatal(err)
			}
			defer h.Close()
			rounds := benchUpdates(syms, 64)
			h.Publish(rounds[0], "c")
			subscribeN(b, h, syms, n, time.Second, discardSink{&delivered, &bytes})
			waitQuiet(h)
			// A change of every symbol: everyone has its first write and then
			// sleeps out its interval.
			h.Publish(rounds[1], "c")
			waitQuiet(h)
			batch := make([]*Update, 1)
			seq := uint64(2)
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				u := rounds[0][i%len(syms)]
				if i%len(syms) == 0 {
					seq++
				}
				nu := *u
				nu.Seq = seq
				batch[0] = &nu
				h.Publish(batch, "c")
			}
			b.StopTimer()
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N), "ns/tick")
		})
	}
}

// waitQuiet waits until the ready queue is empty.
func waitQuiet(h *Hub) {
	for len(h.ready)+len(h.backlog) > 0 {
		time.Sleep(time.Millisecond)
	}
	time.Sleep(20 * time.Millisecond)
}

// BenchmarkFlush is the cost of delivering updates: every symbol changes,
// every subscriber's interval ends, and the writers gather and hand each
// one batch of its 10 changed symbols (encode-free, one Send each). One op
// is one delivered update.
func BenchmarkFlush(b *testing.B) {
	syms := benchSymbols(500)
	for _, n := range []int{1000, 10_000} {
		b.Run(fmt.Sprintf("subscribers=%d", n), func(b *testing.B) {
			var delivered, bytes atomic.Int64
			clk := &fakeClock{now: time.Unix(1000, 0)}
			h, err := New(Config{Symbols: syms, MaxSubscribers: n, Writers: 4, Now: clk.Now, manualTimers: true})
			if err != nil {
				b.Fatal(err)
			}
			defer h.Close()
			subscribeN(b, h, syms, n, time.Second, discardSink{&delivered, &bytes})
			rounds := benchUpdates(syms, 2)
			h.Publish(rounds[0], "c")
			waitQuiet(h)
			per := int64(10 * n)
			b.ReportAllocs()
			b.ResetTimer()
			var done int64
			seq := uint64(2)
			for done < int64(b.N) {
				seq++
				us := make([]*Update, len(syms))
				for i, u := range rounds[1] {
					nu := *u
					nu.Seq = seq
					us[i] = &nu
				}
				h.Publish(us, "c")
				start := delivered.Load()
				h.fireDue(clk.Add(time.Second))
				for delivered.Load()-start < per {
					runtime.Gosched()
				}
				done += per
			}
			b.StopTimer()
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(done), "ns/update")
			b.ReportMetric(float64(done)/b.Elapsed().Seconds(), "updates/s")
		})
	}
}

// BenchmarkSubscriberMemory reports the heap a conflated subscriber of 10
// symbols costs the hub (its socket and transport buffers not included).
func BenchmarkSubscriberMemory(b *testing.B) {
	syms := benchSymbols(500)
	const n = 20_000
	for i := 0; i < b.N; i++ {
		var delivered, bytes atomic.Int64
		h, err := New(Config{Symbols: syms, MaxSubscribers: n, Writers: 4})
		if err != nil {
			b.Fatal(err)
		}
		h.Publish(benchUpdates(syms, 1)[0], "c")
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		subs := subscribeN(b, h, syms, n, time.Second, discardSink{&delivered, &bytes})
		waitQuiet(h)
		runtime.GC()
		runtime.ReadMemStats(&after)
		b.ReportMetric(float64(after.HeapAlloc-before.HeapAlloc)/n, "bytes/subscriber")
		runtime.KeepAlive(subs)
		h.Close()
	}
}
