package transport

import (
	"encoding/json"
	"testing"
)

// FuzzParseInterval: any interval parameter is a non-negative duration or
// an error.
func FuzzParseInterval(f *testing.F) {
	for _, s := range []string{"250ms", "1s", "0", "250", "-1s", "1e9h", "9223372036854775807", "NaN", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if d, err := ParseInterval(s); err == nil && d < 0 {
			t.Fatalf("%q → %v", s, d)
		}
	})
}

// FuzzPollToken: any after= token is parsed or refused; parsed tokens hold
// one seq per requested symbol.
func FuzzPollToken(f *testing.F) {
	f.Add("ab~1.2.3", 3)
	f.Add("~", 1)
	f.Add("x~zzzzzzzzzzzzzzz.1", 2)
	f.Fuzz(func(t *testing.T, tok string, n int) {
		if n < 1 || n > 1000 {
			return
		}
		_, seqs, err := parseToken(tok, n)
		if err == nil && len(seqs) != n {
			t.Fatalf("%q for %d symbols → %d seqs", tok, n, len(seqs))
		}
	})
}

// FuzzWSMessage: any client message decodes or is refused; the interval
// parser never yields a negative duration.
func FuzzWSMessage(f *testing.F) {
	for _, s := range []string{`{"op":"subscribe","symbols":["AAPL"],"interval":"250ms"}`, `{"op":"interval","interval":1e308}`,
		`{"op":"ping","id":{"a":[1,2]}}`, `{"op":"subscribe","symbols":null}`, `[`, `{"interval":-5}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		var in wsIn
		if json.Unmarshal(b, &in) != nil || len(in.Interval) == 0 {
			return
		}
		if d, err := parseJSONInterval(in.Interval); err == nil && d < 0 {
			t.Fatalf("%s → %v", b, d)
		}
	})
}
