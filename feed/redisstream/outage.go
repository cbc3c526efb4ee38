package redisstream

import (
	"fmt"
	"time"
)

// outage is what Run knows of Redis being unreachable.
type outage struct {
	failing bool
	since   time.Time // the first failure
	logged  time.Time // the last line about it
	lost    bool      // Redis came back without the node's history
}

// failed records a failed step: the first failure is a warning (a blip
// that the next attempt ends says no more); while the failures go on, an
// error at most every LogEvery says for how long.
func (r *Reader) failed(o *outage, err error) {
	now := time.Now()
	if !o.failing {
		*o = outage{failing: true, since: now, logged: now}
		r.down.Store(true)
		r.cfg.Logger.Warn("reading redis failed; retrying with backoff", "err", err)
		return
	}
	if now.Sub(o.logged) < r.cfg.LogEvery {
		return
	}
	o.logged = now
	d := now.Sub(o.since)
	r.cfg.Logger.Error(fmt.Sprintf("redis unreachable for %s; still retrying", roundDuration(d)), "down_for", d, "err", err)
}

// recovered records a successful step: after failures, one line says how
// long Redis was away and what the node did on its return, in that order.
func (r *Reader) recovered(o *outage) {
	if !o.failing {
		return
	}
	d := time.Since(o.since)
	if o.lost {
		r.cfg.Logger.Warn(fmt.Sprintf("redis is back after %s; its history was lost: resynchronised from the new epoch", roundDuration(d)),
			"down_for", d, "epoch", r.epoch)
	} else {
		r.cfg.Logger.Info(fmt.Sprintf("redis is back after %s; resumed from the last ids", roundDuration(d)), "down_for", d)
	}
	*o = outage{}
	r.down.Store(false)
}

// roundDuration rounds d for a message: tenths of a second, milliseconds
// under a second.
func roundDuration(d time.Duration) time.Duration {
	if d < time.Second {
		return d.Round(time.Millisecond)
	}
	return d.Round(100 * time.Millisecond)
}
