package fanout

import (
	"fmt"
	"math/rand/v2"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/tickstream/tickstream/internal/wait"
)

// checkSink checks every write as the SSE transport would use it.
type checkSink struct {
	mu     sync.Mutex
	pubOf  func(u *Update) int // the Publish (cursor number) a tick came in
	errs   []string
	last   map[string]uint64
	lastID int
	writes int

	allowResync bool
	resyncs     int
}

func cnum(c string) int { n, _ := strconv.Atoi(c[1:]); return n }

func (k *checkSink) Send(b *Batch) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.writes++
	fail := func(f string, a ...any) {
		if len(k.errs) < 10 {
			k.errs = append(k.errs, fmt.Sprintf("write %d: ", k.writes)+fmt.Sprintf(f, a...)+" batch "+seqs(*b)+fmt.Sprint(b.Marks))
		}
	}
	prev := 0
	for _, m := range b.Marks {
		if m.End <= prev || m.End > len(b.Updates) {
			fail("mark End %d after %d (len %d)", m.End, prev, len(b.Updates))
		}
		prev = m.End
	}
	if b.Resync {
		if !k.allowResync {
			fail("resync")
		}
		clear(k.last)
		k.lastID = 0
		k.resyncs++
	}
	m := 0
	for i, u := range b.Updates {
		if l := k.last[u.Sym]; u.Seq < l || u.Seq == l && (u.Sym == "A" || u.Sym == "B") { // a re-added symbol's snapshot may repeat its value
			fail("%s%d after %s%d", u.Sym, u.Seq, u.Sym, l)
		} else if (u.Sym == "A" || u.Sym == "B") && l != 0 && u.Seq != l+1 {
			fail("%s%d after %s%d: gap", u.Sym, u.Seq, u.Sym, l)
		}
		k.last[u.Sym] = u.Seq
		if u.Sym == "A" || u.Sym == "B" {
			if p := k.pubOf(u); p <= k.lastID {
				fail("%s%d published at c%d, after id c%d", u.Sym, u.Seq, p, k.lastID)
			}
		}
		id := ""
		switch {
		case m < len(b.Marks) && b.Marks[m].End == i+1:
			id = b.Marks[m].Cursor
			m++
		case i == len(b.Updates)-1 && b.Cursor != "":
			id = b.Cursor
		}
		if id != "" {
			n := cnum(id)
			if n < k.lastID {
				fail("id c%d after c%d", n, k.lastID)
			}
			for _, v := range b.Updates[:i+1] {
				if (v.Sym == "A" || v.Sym == "B") && k.pubOf(v) > n {
					fail("%s%d published at c%d, before id c%d", v.Sym, v.Seq, k.pubOf(v), n)
				}
			}
			k.lastID = n
		}
	}
	return nil
}

func (k *checkSink) Close(error) {}

// TestRawChangeUnderLoadKeepsOrder guards raw delivery while raw subscribers
// change their symbols all the time, between their own queue and the log (A
// and B always kept), as ticks are published: A and B arrive gap-free, no
// symbol's seq goes down, marks are increasing and every id is exact for A
// and B.
func TestRawChangeUnderLoadKeepsOrder(t *testing.T) { testRawChangeUnderLoad(t, false) }

// TestRawChangeUnderLoadWithGapsKeepsOrder guards the same with gaps on C..F:
// resyncs reset the checks.
func TestRawChangeUnderLoadWithGapsKeepsOrder(t *testing.T) { testRawChangeUnderLoad(t, true) }

func testRawChangeUnderLoad(t *testing.T, gaps bool) {
	clk := &fakeClock{now: time.Unix(1000, 0)}
	syms := []string{"A", "B", "C", "D", "E", "F"}
	h := newTestHub(t, clk, func(c *Config) {
		c.Symbols, c.RawQueue, c.RawBatchBytes, c.rawLogMin = syms, 1<<20, 200, 0
	})
	var pubMu sync.Mutex
	// By symbol and seq: the hub keeps copies, not the published updates.
	type key struct {
		sym string
		seq uint64
	}
	pub := map[key]int{}
	pubOf := func(u *Update) int { pubMu.Lock(); defer pubMu.Unlock(); return pub[key{u.Sym, u.Seq}] }
	const nSubs, nPub = 6, 1500
	var sinks []*checkSink
	var subs []*Subscriber
	for i := range nSubs {
		k := &checkSink{pubOf: pubOf, last: map[string]uint64{}, allowResync: gaps}
		list := syms[:2+i%5]
		s, _, _, err := h.Subscribe(Options{Symbols: list, Mode: Raw}, k)
		if err != nil {
			t.Fatal(err)
		}
		s.Start()
		sinks, subs = append(sinks, k), append(subs, s)
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for i, s := range subs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := rand.New(rand.NewPCG(uint64(i), 1))
			for {
				select {
				case <-stop:
					return
				default:
				}
				list := []string{"A", "B"}
				for _, x := range syms[2:] {
					if r.IntN(2) == 0 {
						list = append(list, x)
					}
				}
				if _, err := s.Change(list, 0); err != nil {
					t.Error(err)
					return
				}
				time.Sleep(time.Duration(r.IntN(300)) * time.Microsecond)
			}
		}()
	}
	r := rand.New(rand.NewPCG(7, 7))
	seq := map[string]uint64{}
	for p := 1; p <= nPub; p++ {
		var batch []*Update
		for range 1 + r.IntN(6) {
			x := syms[r.IntN(len(syms))]
			seq[x]++
			if gaps && x > "B" && r.IntN(50) == 0 {
				seq[x]++
			}
			u := upd(x, seq[x])
			pubMu.Lock()
			pub[key{u.Sym, u.Seq}] = p
			pubMu.Unlock()
			batch = append(batch, u)
		}
		h.Publish(batch, fmt.Sprintf("c%d", p))
		if p%100 == 0 {
			time.Sleep(time.Millisecond)
		}
	}
	close(stop)
	wg.Wait()
	for i, k := range sinks {
		wait.For(t, 5*time.Second, func() error {
			k.mu.Lock()
			defer k.mu.Unlock()
			if k.last["A"] != seq["A"] || k.last["B"] != seq["B"] {
				return fmt.Errorf("sub %d: A%d B%d, want A%d B%d", i, k.last["A"], k.last["B"], seq["A"], seq["B"])
			}
			return nil
		})
		k.mu.Lock()
		t.Logf("sub %d: %d writes, %d resyncs", i, k.writes, k.resyncs)
		for _, e := range k.errs {
			t.Errorf("sub %d: %s", i, e)
		}
		k.mu.Unlock()
	}
}

// TestRawCloseDuringChangeLeavesNoRegistration guards unregistering:
// subscribers closed while they change symbols (and while ticks flow) leave
// no registration behind: no log subscriber, no raw ref, and the log is
// dropped.
func TestRawCloseDuringChangeLeavesNoRegistration(t *testing.T) {
	clk := &fakeClock{now: time.Unix(1000, 0)}
	syms := []string{"A", "B", "C", "D", "E", "F"}
	h := newTestHub(t, clk, func(c *Config) { c.Symbols, c.RawQueue = syms, 1<<20 })
	stop := make(chan struct{})
	var pw sync.WaitGroup
	pw.Add(1)
	go func() {
		defer pw.Done()
		seq := uint64(0)
		for p := 1; ; p++ {
			select {
			case <-stop:
				return
			default:
			}
			seq++
			h.Publish([]*Update{upd(syms[p%6], seq)}, fmt.Sprintf("c%d", p))
			if p%50 == 0 {
				time.Sleep(100 * time.Microsecond)
			}
		}
	}()
	var wg sync.WaitGroup
	for i := range 40 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := rand.New(rand.NewPCG(uint64(i), 2))
			s, _, _, err := h.Subscribe(Options{Symbols: syms[:1+r.IntN(6)], Mode: Raw}, &recSink{})
			if err != nil {
				t.Error(err)
				return
			}
			s.Start()
			for range r.IntN(20) {
				_, _ = s.Change(syms[:1+r.IntN(6)], 0)
				time.Sleep(time.Duration(r.IntN(200)) * time.Microsecond)
			}
			go s.Close()
			_, _ = s.Change(syms[:1+r.IntN(6)], 0)
		}()
	}
	wg.Wait()
	wait.For(t, 5*time.Second, func() error {
		if n := h.Subscribers(); n != 0 {
			return fmt.Errorf("%d subscribers", n)
		}
		return nil
	})
	close(stop)
	pw.Wait()
	// Let the writers finish whatever service is in progress.
	wait.For(t, 5*time.Second, func() error {
		h.pubMu.Lock()
		defer h.pubMu.Unlock()
		if len(h.logSubs) != 0 {
			return fmt.Errorf("%d log subscribers left", len(h.logSubs))
		}
		for _, st := range h.all {
			if len(st.raw) != 0 {
				return fmt.Errorf("%s: %d raw refs left", st.name, len(st.raw))
			}
		}
		if h.log.buf != nil {
			return fmt.Errorf("log kept: %d entries", len(h.log.buf))
		}
		return nil
	})
}
