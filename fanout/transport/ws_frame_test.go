package transport

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"testing"
)

// clientFrame returns one masked client frame.
func clientFrame(fin bool, op byte, payload []byte) []byte {
	b0 := op
	if fin {
		b0 |= 0x80
	}
	hdr := []byte{b0}
	switch n := len(payload); {
	case n < 126:
		hdr = append(hdr, 0x80|byte(n))
	case n <= 0xFFFF:
		hdr = binary.BigEndian.AppendUint16(append(hdr, 0x80|126), uint16(n))
	default:
		hdr = binary.BigEndian.AppendUint64(append(hdr, 0x80|127), uint64(n))
	}
	key := [4]byte{0x37, 0xfa, 0x21, 0x3d}
	hdr = append(hdr, key[:]...)
	for i, c := range payload {
		hdr = append(hdr, c^key[i%4])
	}
	return hdr
}

type frameEvent struct {
	op      byte
	payload string
}

// feedFrames does what the poller does with one read: the chunk lands in
// a shared buffer (reused, so nothing may alias it after), joins the kept
// bytes, and whole frames are parsed.
func feedFrames(f *wsFrames, shared, chunk []byte, limit int64) ([]frameEvent, *wsProtoError) {
	data := shared[:copy(shared, chunk)]
	if f.kept != nil {
		f.kept = append(f.kept, data...)
		data = f.kept
	}
	var evs []frameEvent
	for {
		op, p, n, perr := f.next(data, limit)
		if perr != nil {
			return evs, perr
		}
		if n == 0 {
			break
		}
		data = data[n:]
		if op != 0 {
			evs = append(evs, frameEvent{op, string(p)})
		}
	}
	f.keep(data)
	for i := range shared {
		shared[i] = 0xEE // a later read overwrites the buffer
	}
	return evs, nil
}

func TestWSFramesSplitAtEveryByte(t *testing.T) {
	long := bytes.Repeat([]byte("0123456789"), 30) // a 16-bit length
	var stream []byte
	stream = append(stream, clientFrame(true, opText, []byte(`{"op":"ping"}`))...)
	stream = append(stream, clientFrame(false, opText, []byte(`{"op":`))...)
	stream = append(stream, clientFrame(true, opPing, []byte("are you there"))...) // between fragments
	stream = append(stream, clientFrame(false, opContinuation, []byte(`"subscribe",`))...)
	stream = append(stream, clientFrame(true, opPong, nil)...)
	stream = append(stream, clientFrame(true, opContinuation, []byte(`"symbols":["AAPL"]}`))...)
	stream = append(stream, clientFrame(true, opText, long)...)
	stream = append(stream, clientFrame(true, opBinary, []byte{1, 2, 3})...)
	stream = append(stream, clientFrame(true, opClose, []byte{0x03, 0xe8})...)
	want := []frameEvent{
		{opText, `{"op":"ping"}`},
		{opPing, "are you there"},
		{opPong, ""},
		{opText, `{"op":"subscribe","symbols":["AAPL"]}`},
		{opText, string(long)},
		{opBinary, "\x01\x02\x03"},
		{opClose, "\x03\xe8"},
	}
	shared := make([]byte, len(stream))
	check := func(name string, chunks [][]byte) {
		t.Helper()
		var f wsFrames
		var got []frameEvent
		for _, c := range chunks {
			evs, perr := feedFrames(&f, shared, c, 1<<10)
			if perr != nil {
				t.Fatalf("%s: %+v", name, perr)
			}
			got = append(got, evs...)
		}
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Fatalf("%s:\n got %q\nwant %q", name, got, want)
		}
		if !f.idle() {
			t.Fatalf("%s: state left after the last frame: %+v", name, f)
		}
	}
	for k := 0; k <= len(stream); k++ {
		check(fmt.Sprintf("split at %d", k), [][]byte{stream[:k], stream[k:]})
	}
	var bytewise [][]byte
	for i := range stream {
		bytewise = append(bytewise, stream[i:i+1])
	}
	check("byte by byte", bytewise)
}

func TestWSFramesProtocolErrors(t *testing.T) {
	unmasked := clientFrame(true, opText, []byte("hi"))
	unmasked[1] &^= 0x80
	rsv := clientFrame(true, opText, []byte("hi"))
	rsv[0] |= 0x40
	topBit := []byte{0x81, 0x80 | 127, 0x80, 0, 0, 0, 0, 0, 0, 1}
	for _, tc := range []struct {
		name   string
		stream []byte
		code   int
	}{
		{"unmasked", unmasked, 1002},
		{"reserved bits", rsv, 1002},
		{"unknown opcode", clientFrame(true, 3, nil), 1002},
		{"fragmented control", clientFrame(false, opPing, nil), 1002},
		{"control too long", clientFrame(true, opPing, make([]byte, 126)), 1002},
		{"continuation first", clientFrame(true, opContinuation, []byte("x")), 1002},
		{"new message inside one", append(clientFrame(false, opText, []byte("a")), clientFrame(true, opText, []byte("b"))...), 1002},
		{"length top bit", topBit, 1002},
		{"oversize", clientFrame(true, opText, make([]byte, 1025)), 1009},
		{"oversize header alone", clientFrame(true, opText, make([]byte, 70000))[:10], 1009},
		{"oversize by fragments", append(clientFrame(false, opText, make([]byte, 600)), clientFrame(true, opContinuation, make([]byte, 600))...), 1009},
	} {
		var f wsFrames
		_, perr := feedFrames(&f, make([]byte, len(tc.stream)), tc.stream, 1<<10)
		if perr == nil || perr.code != tc.code {
			t.Errorf("%s: %+v, want close %d", tc.name, perr, tc.code)
		}
	}
}

func TestWSFramesKeepNothingWhenIdle(t *testing.T) {
	var f wsFrames
	fr := clientFrame(true, opText, []byte(`{"op":"ping"}`))
	shared := make([]byte, 64)
	if _, perr := feedFrames(&f, shared, fr[:5], 1<<10); perr != nil || f.kept == nil {
		t.Fatalf("partial frame not kept: %+v %v", perr, f.kept)
	}
	if _, perr := feedFrames(&f, shared, fr[5:], 1<<10); perr != nil || !f.idle() {
		t.Fatalf("bytes kept after a whole frame: %+v %+v", perr, f)
	}
}

func TestUnmask(t *testing.T) {
	key := [4]byte{1, 2, 3, 4}
	for n := 0; n < 40; n++ {
		p := bytes.Repeat([]byte{0xAA}, n)
		unmask(p, key)
		for i, c := range p {
			if c != 0xAA^key[i%4] {
				t.Fatalf("len %d byte %d: %x", n, i, c)
			}
		}
	}
}
