package transport

import (
	"encoding/json"
	"strconv"

	"github.com/gofiber/fiber/v2"

	"github.com/tickstream/tickstream/fanout"
)

// The SSE framer: the only place the wire's field prefixes (retry:,
// event:, id:, data:) and the stream's response head are written, after
// go-sse's Message.WriteTo. Every SSE byte the node sends (the head, hello,
// the snapshot, ready, live batches, replay pages, goaway, heartbeats, the
// HEAD answer and the refusals) is built here.
//
// An event is written in the order retry:, event:, data:, id:, then the
// blank line that dispatches it. The data is always one line of JSON (the
// source's tick JSON or encoding/json's output, neither of which holds a
// newline), so it is one data: field.

// sseEvent is one event on the wire. Its zero fields are left out.
type sseEvent struct {
	retry int    // reconnection delay in milliseconds; 0: none
	event string // the event's type
	id    string // the client's new Last-Event-ID (a cursor)
	data  []byte // one line of JSON
}

// appendTo appends e's fields and the blank line that ends it.
func (e *sseEvent) appendTo(b []byte) []byte {
	if e.retry > 0 {
		b = append(b, "retry: "...)
		b = strconv.AppendInt(b, int64(e.retry), 10)
		b = append(b, '\n')
	}
	b = appendSSEStart(b, e.event)
	b = append(b, e.data...)
	return appendSSEEnd(b, e.id)
}

// appendSSEStart opens an event of type name (none if empty) and its data:
// field; the caller appends the data, then appendSSEEnd. The hot path
// (encodeBatch) writes ticks this way, copying their JSON only once.
func appendSSEStart(b []byte, name string) []byte {
	if name == "tick" {
		return append(b, "event: tick\ndata: "...)
	}
	if name != "" {
		b = append(b, "event: "...)
		b = append(b, name...)
		b = append(b, '\n')
	}
	return append(b, "data: "...)
}

// appendSSEEnd ends the data: field, adds id: (if id is not empty) and the
// blank line.
func appendSSEEnd(b []byte, id string) []byte {
	b = append(b, '\n')
	if id != "" {
		b = append(b, "id: "...)
		b = append(b, id...)
		b = append(b, '\n')
	}
	return append(b, '\n')
}

// appendSSEJSON appends an event of type name whose data is v as JSON.
func appendSSEJSON(b []byte, retry int, name string, v any) []byte {
	js, _ := json.Marshal(v)
	e := sseEvent{retry: retry, event: name, data: js}
	return e.appendTo(b)
}

// appendSSEControl appends a control event (resync, lagging, goaway): its
// data is {"reason": text}.
func appendSSEControl(b []byte, retry int, c control, text string) []byte {
	return appendSSEJSON(b, retry, c.event, map[string]string{"reason": text})
}

// sseHeartbeat is the keep-alive: a comment line, which clients ignore.
var sseHeartbeat = []byte(": hb\n\n")

// Pre-framed notices of live batches: their bytes never change.
var (
	sseResync  = appendSSEControl(nil, 0, ctlResync, ctlResync.text)
	sseLagging = appendSSEControl(nil, 0, ctlLagging, ctlLagging.text)
)

// appendSSETick appends a tick event whose data is u's JSON with its
// symbol's reference members (refs nil: as it is), without an id.
func appendSSETick(b []byte, u *fanout.Update, refs *refTable) []byte {
	b = appendSSEStart(b, "tick")
	b = refs.appendTick(b, u)
	return appendSSEEnd(b, "")
}

// encodeBatch appends a batch's SSE events to dst: its notices, a tick
// event per update (a raw batch's every resume point, and the last tick of
// any batch with a cursor, carry the cursor in id:), or a heartbeat when it
// holds nothing else. It allocates nothing but dst's growth.
func encodeBatch(dst []byte, b *fanout.Batch) []byte {
	n := len(dst)
	if b.Resync {
		dst = append(dst, sseResync...)
	}
	if b.Lagging {
		dst = append(dst, sseLagging...)
	}
	m := 0
	for i, u := range b.Updates {
		dst = appendSSEStart(dst, "tick")
		dst = append(dst, u.JSON...)
		id := ""
		switch {
		case m < len(b.Marks) && b.Marks[m].End == i+1:
			// A raw batch's boundary: the client's Last-Event-ID moves here,
			// so a write cut after it is resumed from here.
			id = b.Marks[m].Cursor
			m++
		case i == len(b.Updates)-1:
			id = b.Cursor
		}
		dst = appendSSEEnd(dst, id)
	}
	if len(dst) == n && b.Heartbeat {
		dst = append(dst, sseHeartbeat...)
	}
	return dst
}

// appendReady appends the ready event, which carries the cursor.
func appendReady(b []byte, cursor string) []byte {
	b = appendSSEStart(b, "ready")
	b = append(b, `{"cursor":`...)
	b = strconv.AppendQuote(b, cursor)
	b = append(b, '}')
	return appendSSEEnd(b, cursor)
}

// sseHeaders are the response headers of every event stream, GET or HEAD
// (X-Tickstream-Node is set for every route; Access-Control-Allow-Origin
// when the request has an Origin).
var sseHeaders = [...][2]string{
	{fiber.HeaderContentType, "text/event-stream; charset=utf-8"},
	{fiber.HeaderCacheControl, "no-cache"},
	{"X-Accel-Buffering", "no"}, // nginx: do not buffer the stream
}

// setSSEHeaders sets the event-stream headers on a response Fiber writes
// (the HEAD answer, a refusal's stream).
func setSSEHeaders(c *fiber.Ctx) {
	for _, h := range sseHeaders {
		c.Set(h[0], h[1])
	}
	if c.Get(fiber.HeaderOrigin) != "" {
		c.Set(fiber.HeaderAccessControlAllowOrigin, "*")
	}
}

// appendSSEHead appends a hijacked stream's HTTP response head: the same
// headers, and Connection: close (the node closes a stream's socket when
// the stream ends: goaway, drain, rebalancing; a proxy must not keep it for
// another request, nginx would meet a reset and mark the node failed).
func appendSSEHead(buf []byte, node string, cors, chunked bool) []byte {
	buf = append(buf, "HTTP/1.1 200 OK\r\n"...)
	for _, h := range sseHeaders {
		buf = append(buf, h[0]...)
		buf = append(buf, ": "...)
		buf = append(buf, h[1]...)
		buf = append(buf, "\r\n"...)
	}
	buf = append(buf, "X-Tickstream-Node: "...)
	buf = append(buf, node...)
	if cors {
		buf = append(buf, "\r\nAccess-Control-Allow-Origin: *"...)
	}
	if chunked {
		return append(buf, "\r\nConnection: close\r\nTransfer-Encoding: chunked\r\n\r\n"...)
	}
	return append(buf, "\r\nConnection: close\r\n\r\n"...)
}

// appendChunk appends body to dst as one HTTP chunk (or as is, without
// chunked encoding).
func appendChunk(dst, body []byte, chunked bool) []byte {
	if !chunked {
		return append(dst, body...)
	}
	dst = strconv.AppendUint(dst, uint64(len(body)), 16)
	dst = append(dst, '\r', '\n')
	dst = append(dst, body...)
	return append(dst, '\r', '\n')
}

// lastChunk ends a chunked body.
const lastChunk = "0\r\n\r\n"
