package transport

import (
	"errors"

	"github.com/fasthttp/websocket"

	"github.com/tickstream/tickstream/fanout"
)

// The wire's control vocabulary, after centrifuge's disconnect.go: every
// notice and every end of a stream the node sends is one of these, with
// its SSE event name (a WebSocket message's "type"), its WebSocket close
// code (0: a notice, the stream goes on) and its text (the "reason" of
// both). No other file picks a close code or spells a control text.

// control is one entry of the vocabulary.
type control struct {
	event string // SSE event name; WebSocket message type
	code  int    // WebSocket close code; 0 for a notice
	text  string // the reason; empty when the reason is an error's text
}

// with returns c with text as its reason (an error's, for the entries
// that end a stream for many reasons).
func (c control) with(text string) control {
	c.text = text
	return c
}

// Notices: the stream goes on.
var (
	// ctlResync: the client's history is gone; a fresh snapshot follows.
	ctlResync = control{"resync", 0, "history lost (new epoch)"}
	// ctlLagging: the client reads too slowly; it is conflated harder.
	ctlLagging = control{"lagging", 0, "slow consumer: updates are conflated harder"}
)

// Ends of a stream the node decides (an error's text is the reason).
var (
	// ctlGoaway: the stream ends; reconnect (shutdown, rebalancing).
	ctlGoaway = control{"goaway", websocket.CloseGoingAway, ""}
	// ctlRestart: the node drains, or refused the subscription (draining,
	// closed, full): reconnect, to another node.
	ctlRestart = control{"goaway", websocket.CloseServiceRestart, ""}
	// ctlTryLater: the client was too slow, or the node too busy to replay
	// its resume now: resume later.
	ctlTryLater = control{"goaway", websocket.CloseTryAgainLater, ""}
	// ctlTokenExpired: the stream's token expired.
	ctlTokenExpired = control{"goaway", websocket.ClosePolicyViolation, ErrTokenExpired.Error()}
	// ctlShutdown: the WebSocket poller stops with the server.
	ctlShutdown = control{"goaway", websocket.CloseGoingAway, "server shutting down"}
	// ctlSlowReplies: a WebSocket client let the node's replies pile up.
	ctlSlowReplies = control{"goaway", websocket.CloseTryAgainLater, "slow consumer: replies not read"}
)

// Ends of a WebSocket the client caused (RFC 6455 §7.4.1).
var (
	ctlTooManyMessages = control{"goaway", websocket.ClosePolicyViolation, "too many messages"}
	ctlTextOnly        = control{"goaway", websocket.CloseUnsupportedData, "text JSON messages only"}
	ctlBadUTF8         = control{"goaway", websocket.CloseInvalidFramePayloadData, "text message is not valid UTF-8"}
	ctlBadCloseUTF8    = control{"goaway", websocket.CloseInvalidFramePayloadData, "close reason is not valid UTF-8"}
	ctlCloseOneByte    = control{"goaway", websocket.CloseProtocolError, "close frame of one byte"}
	ctlBadCloseCode    = control{"goaway", websocket.CloseProtocolError, "invalid close code"}
	ctlReservedBits    = control{"goaway", websocket.CloseProtocolError, "reserved bits set: no extension was negotiated"}
	ctlUnmasked        = control{"goaway", websocket.CloseProtocolError, "client frames must be masked"}
	ctlLengthTopBit    = control{"goaway", websocket.CloseProtocolError, "frame length has its top bit set"}
	ctlFragmentedCtl   = control{"goaway", websocket.CloseProtocolError, "fragmented control frame"}
	ctlLongControl     = control{"goaway", websocket.CloseProtocolError, "control frame longer than 125 bytes"}
	ctlInterleaved     = control{"goaway", websocket.CloseProtocolError, "new message before the end of a fragmented one"}
	ctlOrphanCont      = control{"goaway", websocket.CloseProtocolError, "continuation frame without a message"}
	ctlUnknownOpcode   = control{"goaway", websocket.CloseProtocolError, "unknown opcode"}
	ctlTooBig          = control{"goaway", websocket.CloseMessageTooBig, "message too big"}
)

// closeReasons maps why a subscriber was closed to the control that
// tells its client; any other reason is ctlGoaway.
var closeReasons = []struct {
	err error
	ctl control
}{
	{fanout.ErrDraining, ctlRestart},
	{fanout.ErrSlowConsumer, ctlTryLater},
	{fanout.ErrOverflow, ctlTryLater},
	{errReplayBusy, ctlTryLater},
	{ErrTokenExpired, ctlTokenExpired},
}

// closing returns the control that ends a stream closed for reason, with
// reason's text.
func closing(reason error) control {
	for _, r := range closeReasons {
		if errors.Is(reason, r.err) {
			return r.ctl.with(reason.Error())
		}
	}
	return ctlGoaway.with(reason.Error())
}

// refusing returns the control that ends an upgraded WebSocket whose
// subscription the hub refused (see isStreamRefusal): no socket is left
// open without a subscription.
func refusing(reason error) control { return ctlRestart.with(reason.Error()) }
