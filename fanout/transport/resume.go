package transport

import (
	"context"
	"errors"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/tickstream/tickstream/fanout"
	"github.com/tickstream/tickstream/feed"
)

// Defaults of the resume settings (see Config).
const (
	defaultResumeWait           = 3 * time.Second
	defaultReplayWait           = 15 * time.Second
	defaultMaxReplays           = 16
	defaultMaxReplaysPerAddress = 4
	defaultReplayPage           = 500
)

// A raw resume is read back from the source page by page and written to
// its client as the client takes it, before the subscriber joins the hub:
//
//   - a page is at most ReplayPage stream entries (and the replayer's byte
//     budget); reading one takes a replay slot (MaxReplays on the node,
//     MaxReplaysPerAddress per client address), given back before the page
//     is written, so a slow client never holds one. A resume waits in line
//     for a slot up to ReplayWait, then is sent away (goaway, retry:) to
//     resume later from the same cursor: exact still, never a resync;
//   - every page carries resume points (an SSE id:, a WebSocket frame's
//     cursor) every few ticks and after its last, so a client cut anywhere
//     resumes where it was cut and never receives a tick twice;
//   - once a page reaches the head of the feed with few ticks, the
//     subscriber joins the hub under the same slot and the ticks published
//     meanwhile are read back too: its queue only ever holds what arrived
//     since, so a resume is never dropped for the live ticks that queued
//     while its replay drained.
const (
	// resumeSmall is the most ticks a last page may hold for the subscriber
	// to join the hub after it.
	resumeSmall = 256
	// resumeStall bounds how long a resuming client may take no bytes at
	// all; past it the node closes the stream (goaway), and the client
	// resumes from the last point it received.
	resumeStall = 10 * time.Second
	// resumePiece is about the bytes written at once during a replay.
	resumePiece = 32 << 10
)

// errReplayBusy is a replay slot not found in time: the client is sent
// away to resume later from the same cursor, still exactly.
var errReplayBusy = errors.New("too many replays at once: resume later")

// rawResume is one raw subscriber's resume from a cursor.
type rawResume struct {
	srv    *Server
	syms   []string
	addr   string
	lastID string
	// subscribe joins the hub (the transport's Hub.Subscribe).
	subscribe func() (*fanout.Subscriber, []*fanout.Update, string, error)
	// out writes ticks with their resume points (Marks' End index ups) and
	// returns once the peer has taken them, or with an error.
	out func(ups []*fanout.Update, marks []fanout.Mark) error
}

// resumed is how a raw resume ended: the subscriber (nil if it could not
// join), and, when the node cannot continue exactly from the client's
// cursor, a resync reason with the snapshot to send instead.
type resumed struct {
	sub    *fanout.Subscriber
	cursor string
	resync string
	snap   []*fanout.Update
}

// wantsReplay reports whether a subscription resumes raw from a cursor of
// the hub's epoch: the case a replay serves.
func (s *Server) wantsReplay(lastID string, req subRequest) bool {
	return lastID != "" && req.mode == fanout.Raw && s.cfg.History != nil
}

// run catches the client up from lastID and joins the hub. It returns an
// error only when the subscriber could not join (ErrDraining, the node
// full) or the connection failed; the subscriber, if any, is then closed.
func (r *rawResume) run(ctx context.Context) (resumed, error) {
	s := r.srv
	if reason := r.check(ctx); reason != "" {
		return r.resync(reason)
	}
	pos := r.lastID
	var seqs map[string]uint64
	for {
		release, err := s.replays.acquire(ctx, r.addr, s.cfg.MaxReplays, s.cfg.MaxReplaysPerAddress, s.cfg.ReplayWait)
		if err != nil {
			s.refuse(refusedReplayBusy, r.addr)
			return resumed{}, err
		}
		head := s.cfg.Hub.Cursor()
		pg, err := r.page(ctx, pos, head, seqs)
		if err != nil {
			release()
			return r.resync(r.refusal(err))
		}
		if pg.Done && len(pg.Updates) <= resumeSmall {
			res, err := r.join(ctx, pg, release)
			return res, err
		}
		release()
		if err := r.write(pg); err != nil {
			return resumed{}, err
		}
		pos, seqs = pg.Next, pg.Seqs
	}
}

// join subscribes under the replay slot that read the last page, reads
// back what was published since, then writes both: the subscriber's queue
// holds only what arrives from its cursor on.
func (r *rawResume) join(ctx context.Context, last feed.ReplayPage, release func()) (resumed, error) {
	sub, snap, cursor, err := r.subscribe()
	if err != nil {
		release()
		return resumed{}, err
	}
	pages := []feed.ReplayPage{last}
	for pg := last; ; {
		if pg, err = r.page(ctx, pg.Next, cursor, pg.Seqs); err != nil {
			break
		}
		pages = append(pages, pg)
		if pg.Done {
			break
		}
	}
	release()
	if err != nil {
		// The subscriber drops what it holds on resync: the snapshot taken
		// at its cursor, which its queue continues.
		return resumed{sub: sub, cursor: cursor, resync: r.refusal(err), snap: snap}, nil
	}
	for _, pg := range pages {
		if err := r.write(pg); err != nil {
			sub.CloseWith(err)
			return resumed{}, err
		}
	}
	return resumed{sub: sub, cursor: cursor}, nil
}

// write writes a page to the client; one that took nothing for
// resumeStall is counted.
func (r *rawResume) write(pg feed.ReplayPage) error {
	err := r.out(pg.Updates, pg.Marks)
	if errors.Is(err, fanout.ErrSlowConsumer) {
		r.srv.refuse(refusedReplayStalled, r.addr)
	}
	return err
}

// page reads one page of the replay and counts it.
func (r *rawResume) page(ctx context.Context, from, to string, seqs map[string]uint64) (feed.ReplayPage, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	pg, err := r.srv.cfg.History.ReplayPage(ctx, from, to, r.syms, seqs, r.srv.cfg.ReplayPage)
	if err == nil {
		r.srv.metrics.replayed.Add(float64(len(pg.Updates)))
	}
	return pg, err
}

// refusal counts a replay that failed and returns its resync reason.
func (r *rawResume) refusal(err error) string {
	reason := refusedReplayGap
	if strings.Contains(err.Error(), "budget") { // the span was refused, not lost
		reason = refusedReplayBudget
	}
	r.srv.refuse(reason, r.addr)
	return "cannot replay: " + err.Error()
}

// resync joins the hub for a fresh snapshot, with the reason the node
// cannot continue exactly from the client's cursor.
func (r *rawResume) resync(reason string) (resumed, error) {
	sub, snap, cursor, err := r.subscribe()
	if err != nil {
		return resumed{}, err
	}
	return resumed{sub: sub, cursor: cursor, resync: reason, snap: snap}, nil
}

// check returns why the node cannot replay from lastID at all, or "". A
// cursor of another epoch is history lost; one beyond the newest entry the
// source holds is refused at once (no node will ever reach it); one this
// node's reader has not reached yet is waited for (its next reads are
// signalled, nothing polls), up to ResumeWait.
func (r *rawResume) check(ctx context.Context) string {
	s := r.srv
	h := s.cfg.History
	cur := s.cfg.Hub.Cursor()
	if epochOf(cur) != epochOf(r.lastID) {
		return "history lost (new epoch)"
	}
	behind, err := h.Behind(cur, r.lastID, r.syms)
	if err != nil {
		s.refuse(refusedReplayBadCursor, r.addr)
		return "cannot replay: " + err.Error()
	}
	if !behind {
		return ""
	}
	if beyond, err := h.Beyond(ctx, r.lastID, r.syms); err != nil || beyond {
		s.refuse(refusedReplayFutureCursor, r.addr)
		return "the cursor is beyond the feed"
	}
	// A node nobody watched rests between reads (--read-idle): wake it.
	s.cfg.Hub.Look()
	t := time.NewTimer(s.cfg.ResumeWait)
	defer t.Stop()
	for {
		moved := s.cfg.Hub.CursorMoved()
		cur = s.cfg.Hub.Cursor()
		if epochOf(cur) != epochOf(r.lastID) {
			return "history lost (new epoch)"
		}
		if behind, err = h.Behind(cur, r.lastID, r.syms); err != nil || !behind {
			return ""
		}
		select {
		case <-moved:
		case <-t.C:
			s.refuse(refusedReplayNodeBehind, r.addr)
			return "this node has not read as far as the cursor yet"
		case <-ctx.Done():
			return "this node has not read as far as the cursor yet"
		}
	}
}

// replayPieces hands ups to send in batches of about resumePiece bytes,
// each ending at a resume point of marks and carrying the points inside it
// (their End relative to the batch).
func replayPieces(ups []*fanout.Update, marks []fanout.Mark, send func(*fanout.Batch) error) error {
	start, size := 0, 0
	var b fanout.Batch
	for _, m := range marks {
		for _, u := range ups[start+len(b.Updates) : m.End] {
			size += len(u.JSON)
		}
		b.Updates = ups[start:m.End]
		b.Marks = append(b.Marks, fanout.Mark{End: m.End - start, Cursor: m.Cursor})
		b.Cursor = m.Cursor
		if size >= resumePiece {
			if err := send(&b); err != nil {
				return err
			}
			start, size, b = m.End, 0, fanout.Batch{}
		}
	}
	if len(b.Updates) > 0 {
		return send(&b)
	}
	return nil
}

// resumeSnapshot decides what follows hello when no replay is asked for:
// the snapshot, with a resync reason if the client held a cursor the node
// cannot honour (another epoch).
func (s *Server) resumeSnapshot(cursor, lastID string, mode fanout.Mode) string {
	switch {
	case lastID == "":
		return ""
	case epochOf(lastID) != epochOf(cursor):
		return "history lost (new epoch)"
	case mode == fanout.Raw && s.cfg.History == nil:
		return "no history to replay from"
	}
	return ""
}

// epochOf returns the epoch part of a cursor: the text before its first dot.
func epochOf(cursor string) string {
	for i := 0; i < len(cursor); i++ {
		if cursor[i] == '.' {
			return cursor[:i]
		}
	}
	return cursor
}

// replayGate hands out replay slots, per node and per client address. A
// resume that finds none waits in line: a slot given back goes to the
// first waiter whose address is under its bound, and wakes that waiter
// alone.
type replayGate struct {
	mu         sync.Mutex
	total      int
	perAddr    map[string]int
	line       []*replayWaiter // in order of arrival
	max, perMx int             // the bounds of the last acquire
}

// replayWaiter is a resume in line; granted is closed when a slot is
// handed to it.
type replayWaiter struct {
	addr    string
	granted chan struct{}
}

// acquire takes a slot for addr, waiting in line up to wait for one, and
// returns the function that gives it back (defaults for limits <= 0).
func (g *replayGate) acquire(ctx context.Context, addr string, max, perAddr int, wait time.Duration) (func(), error) {
	if max <= 0 {
		max = defaultMaxReplays
	}
	if perAddr <= 0 {
		perAddr = defaultMaxReplaysPerAddress
	}
	g.mu.Lock()
	g.max, g.perMx = max, perAddr
	if g.fits(addr) {
		g.take(addr)
		g.mu.Unlock()
		return g.releaser(addr), nil
	}
	w := &replayWaiter{addr: strings.Clone(addr), granted: make(chan struct{})}
	g.line = append(g.line, w)
	g.mu.Unlock()
	t := time.NewTimer(wait)
	defer t.Stop()
	var err error
	select {
	case <-w.granted:
		return g.releaser(addr), nil
	case <-t.C:
		err = errReplayBusy
	case <-ctx.Done():
		err = ctx.Err()
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if i := slices.Index(g.line, w); i >= 0 {
		g.line = slices.Delete(g.line, i, i+1)
		return nil, err
	}
	return g.releaser(addr), nil // handed a slot as the wait ended
}

// fits reports whether a slot is free for addr. Called under mu.
func (g *replayGate) fits(addr string) bool {
	return g.total < g.max && g.perAddr[addr] < g.perMx
}

// take counts a slot of addr. Called under mu.
func (g *replayGate) take(addr string) {
	if g.perAddr == nil {
		g.perAddr = map[string]int{}
	}
	g.total++
	g.perAddr[strings.Clone(addr)]++
}

// releaser returns the function that gives addr's slot back, once.
func (g *replayGate) releaser(addr string) func() {
	var once sync.Once
	return func() { once.Do(func() { g.release(addr) }) }
}

// release gives a slot of addr back and hands it to the first waiter in
// line that it fits.
func (g *replayGate) release(addr string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.total--
	if g.perAddr[addr]--; g.perAddr[addr] <= 0 {
		delete(g.perAddr, addr)
	}
	for i, w := range g.line {
		if g.fits(w.addr) {
			g.take(w.addr)
			g.line = slices.Delete(g.line, i, i+1)
			close(w.granted)
			return
		}
	}
}
