package transport

// The reasons of tickstream_refused_total, in one place: every one is
// exported at zero from the start (a rate() or an alert on a reason needs
// its series before the first refusal). A refusal counted under a reason
// missing here still counts; TestRefusalReasonsListed keeps the list
// complete.
const (
	refusedMaxConns           = "max_conns"             // the node's connection cap: newcomer reset
	refusedMaxConnsPerAddress = "max_conns_per_address" // one address's connection cap: newcomer reset
	refusedEvictedSilent      = "evicted_silent"        // a silent connection reset to make room at the cap
	refusedMaxPerAddress      = "max_per_address"       // one address's stream cap: 429 or an SSE goaway
	refusedMessageRate        = "message_rate"          // a WebSocket client over its message rate: close 1008
	refusedSlowReplies        = "slow_replies"          // a WebSocket client not reading its replies: close 1013
	refusedReplayBusy         = "replay_busy"           // no replay slot within ReplayWait: sent away to resume later
	refusedReplayStalled      = "replay_stalled"        // a resuming raw client took nothing of its replay
	refusedReplayGap          = "replay_gap"            // the missed span is no longer in Redis: resync
	refusedReplayBudget       = "replay_budget"         // the missed span is over the replay budget: resync
	refusedReplayBadCursor    = "replay_bad_cursor"     // a cursor the node cannot compare: resync
	refusedReplayFutureCursor = "replay_future_cursor"  // a cursor beyond the feed: resync
	refusedReplayNodeBehind   = "replay_node_behind"    // this node did not reach the cursor within ResumeWait: resync
)

// refusalReasons lists every reason above.
var refusalReasons = []string{
	refusedMaxConns, refusedMaxConnsPerAddress, refusedEvictedSilent, refusedMaxPerAddress,
	refusedMessageRate, refusedSlowReplies, refusedReplayBusy, refusedReplayStalled,
	refusedReplayGap, refusedReplayBudget, refusedReplayBadCursor, refusedReplayFutureCursor,
	refusedReplayNodeBehind,
}

// refuse counts a refusal of a client at addr (its address as the
// per-address limits see it) and logs it at debug.
func (s *Server) refuse(reason, addr string) {
	s.metrics.refused.WithLabelValues(reason).Inc()
	s.cfg.Logger.Debug("refused", "reason", reason, "client", addr)
}
