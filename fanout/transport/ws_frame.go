package transport

import (
	"encoding/binary"
	"unicode/utf8"

	"github.com/fasthttp/websocket"
)

// Reading client frames without a goroutine (RFC 6455 §5): the poller
// (ws_poll_linux.go) reads whatever a readable socket holds into a shared
// buffer and hands it to the session, which parses whole frames from it at
// once. Only a socket that left an incomplete frame (or an incomplete
// fragmented message) keeps bytes of its own between reads.

// WebSocket opcodes.
const (
	opContinuation = 0
	opText         = websocket.TextMessage   // 1
	opBinary       = websocket.BinaryMessage // 2
	opClose        = websocket.CloseMessage  // 8
	opPing         = websocket.PingMessage   // 9
	opPong         = websocket.PongMessage   // 10
)

// maxControlPayload bounds a control frame's payload (RFC 6455 §5.5).
const maxControlPayload = 125

// wsProtoError is a client's breach of the protocol: the socket is closed
// with its code (an entry of control.go).
type wsProtoError = control

// wsFrames is the reading state of one WebSocket: the bytes of an
// incomplete frame and the data of an incomplete fragmented message.
type wsFrames struct {
	kept  []byte // an incomplete frame's bytes, from the last read; nil if none
	msg   []byte // the fragments of the message in progress
	msgOp byte   // that message's opcode; 0 when none is in progress
}

// idle reports whether nothing is held between reads.
func (f *wsFrames) idle() bool { return f.kept == nil && f.msg == nil && f.msgOp == 0 }

// next parses the frame at the start of b, limit bounding a data message.
// It returns n = 0 when b does not hold the whole frame yet; a frame that
// can never be valid (its header says so) fails at once, before its
// payload arrives. A control frame is returned with its payload unmasked
// in place in b. A data frame joins the message in progress: op is
// opText or opBinary, with the message (a copy, b is not kept), when it
// completes one; otherwise op is 0 and n > 0.
func (f *wsFrames) next(b []byte, limit int64) (op byte, payload []byte, n int, perr *wsProtoError) {
	if len(b) < 2 {
		return 0, nil, 0, nil
	}
	fin := b[0]&0x80 != 0
	if b[0]&0x70 != 0 {
		return 0, nil, 0, &ctlReservedBits
	}
	op = b[0] & 0x0f
	if b[1]&0x80 == 0 {
		return 0, nil, 0, &ctlUnmasked
	}
	size, hl := uint64(b[1]&0x7f), 2
	switch size {
	case 126:
		if len(b) < 4 {
			return 0, nil, 0, nil
		}
		size, hl = uint64(binary.BigEndian.Uint16(b[2:])), 4
	case 127:
		if len(b) < 10 {
			return 0, nil, 0, nil
		}
		size, hl = binary.BigEndian.Uint64(b[2:]), 10
		if size>>63 != 0 {
			return 0, nil, 0, &ctlLengthTopBit
		}
	}
	switch op {
	case opClose, opPing, opPong:
		if !fin {
			return 0, nil, 0, &ctlFragmentedCtl
		}
		if size > maxControlPayload {
			return 0, nil, 0, &ctlLongControl
		}
	case opText, opBinary:
		if f.msgOp != 0 {
			return 0, nil, 0, &ctlInterleaved
		}
		if size > uint64(limit) {
			return 0, nil, 0, &ctlTooBig
		}
	case opContinuation:
		if f.msgOp == 0 {
			return 0, nil, 0, &ctlOrphanCont
		}
		if uint64(len(f.msg))+size > uint64(limit) {
			return 0, nil, 0, &ctlTooBig
		}
	default:
		return 0, nil, 0, &ctlUnknownOpcode
	}
	hl += 4 // the masking key
	if uint64(len(b)) < uint64(hl)+size {
		return 0, nil, 0, nil
	}
	n = hl + int(size)
	payload = b[hl:n]
	unmask(payload, [4]byte(b[hl-4:hl]))
	switch {
	case op >= opClose:
		return op, payload, n, nil
	case fin && op != opContinuation: // a whole message in one frame
		return op, append([]byte(nil), payload...), n, nil
	}
	if op != opContinuation {
		f.msgOp = op
	}
	f.msg = append(f.msg, payload...)
	if !fin {
		return 0, nil, n, nil
	}
	op, payload = f.msgOp, f.msg
	f.msg, f.msgOp = nil, 0
	return op, payload, n, nil
}

// unmask applies a client's masking key to p in place.
func unmask(p []byte, key [4]byte) {
	k := binary.LittleEndian.Uint32(key[:])
	k64 := uint64(k) | uint64(k)<<32
	i := 0
	for ; i+8 <= len(p); i += 8 {
		binary.LittleEndian.PutUint64(p[i:], binary.LittleEndian.Uint64(p[i:])^k64)
	}
	for ; i < len(p); i++ {
		p[i] ^= key[i&3]
	}
}

// keep makes rest (a suffix of b, b being f.kept or a shared read buffer)
// the bytes kept until the next read; nothing is held when it is empty.
func (f *wsFrames) keep(rest []byte) {
	if len(rest) == 0 {
		f.kept = nil
		return
	}
	if f.kept != nil && &rest[0] == &f.kept[0] {
		return // nothing consumed: an incomplete frame growing over reads
	}
	if f.kept != nil && cap(f.kept) >= len(rest) && len(rest) <= 4096 {
		f.kept = f.kept[:copy(f.kept, rest)] // rest may be its own suffix: copy handles the overlap
		return
	}
	f.kept = append([]byte(nil), rest...)
}

// validCloseCode reports whether a peer may send code in a close frame
// (RFC 6455 §7.4; 1004-1006 and 1015 are never sent).
func validCloseCode(code int) bool {
	switch {
	case code >= 1000 && code <= 1003, code >= 1007 && code <= 1014:
		return true
	case code >= 3000 && code <= 4999:
		return true
	}
	return false
}

// consume acts on the whole frames at the start of b: control frames at
// once (pong, rate limit, close handshake), data messages checked (rate
// limit, text only, UTF-8). It stops after one data message and returns
// it, to be handled outside the read lock, with the bytes it did not
// consume. ok is false once the session's socket is closed. The caller
// holds sess.rmu.
func (sess *wsSession) consume(b []byte) (msg, rest []byte, ok bool) {
	limit := sess.srv.cfg.MaxMessage
	for {
		op, payload, n, perr := sess.rd.next(b, limit)
		if perr != nil {
			sess.closeWith(*perr)
			return nil, nil, false
		}
		if n == 0 {
			return nil, b, true
		}
		b = b[n:]
		switch op {
		case opPing:
			// A ping frame is a message like any other for the rate limit.
			if !sess.allow() {
				sess.closeWith(ctlTooManyMessages)
				return nil, nil, false
			}
			if sess.control(websocket.PongMessage, payload) != nil {
				return nil, nil, false
			}
		case opPong:
			if !sess.allow() {
				sess.closeWith(ctlTooManyMessages)
				return nil, nil, false
			}
		case opClose:
			sess.closeHandshake(payload)
			return nil, nil, false
		case opText, opBinary:
			if !sess.allow() {
				sess.closeWith(ctlTooManyMessages)
				return nil, nil, false
			}
			if op != opText {
				sess.closeWith(ctlTextOnly)
				return nil, nil, false
			}
			if !utf8.Valid(payload) { // RFC 6455 §8.1
				sess.closeWith(ctlBadUTF8)
				return nil, nil, false
			}
			return payload, b, true
		}
	}
}

// closeHandshake answers a client's close frame with the same code and
// closes the socket; a malformed close frame gets 1002 or 1007.
func (sess *wsSession) closeHandshake(payload []byte) {
	switch {
	case len(payload) == 1:
		sess.closeWith(ctlCloseOneByte)
		return
	case len(payload) >= 2:
		code := int(binary.BigEndian.Uint16(payload))
		if !validCloseCode(code) {
			sess.closeWith(ctlBadCloseCode)
			return
		}
		if !utf8.Valid(payload[2:]) {
			sess.closeWith(ctlBadCloseUTF8)
			return
		}
		_ = sess.control(opClose, websocket.FormatCloseMessage(code, ""))
	default:
		_ = sess.control(opClose, nil)
	}
	sess.finish()
}
