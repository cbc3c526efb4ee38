package transport

import (
	"strings"
	"testing"

	"github.com/tickstream/tickstream/fanout"
)

// Every published batch inside a raw write gets its id: line, the last
// tick the batch's cursor; a conflated write only the last.
func TestEncodeBatchIDAtEveryMark(t *testing.T) {
	u := func(sym string) *fanout.Update {
		return &fanout.Update{Sym: sym, JSON: []byte(`{"sym":"` + sym + `"}`)}
	}
	raw := &fanout.Batch{
		Updates: []*fanout.Update{u("A"), u("B"), u("C")},
		Cursor:  "c2",
		Marks:   []fanout.Mark{{End: 2, Cursor: "c1"}, {End: 3, Cursor: "c2"}},
	}
	got := string(encodeBatch(nil, raw))
	want := "event: tick\ndata: {\"sym\":\"A\"}\n\n" +
		"event: tick\ndata: {\"sym\":\"B\"}\nid: c1\n\n" +
		"event: tick\ndata: {\"sym\":\"C\"}\nid: c2\n\n"
	if got != want {
		t.Fatalf("raw:\n%s\nwant:\n%s", got, want)
	}
	conflated := &fanout.Batch{Updates: []*fanout.Update{u("A"), u("B")}, Cursor: "c9"}
	if got := string(encodeBatch(nil, conflated)); strings.Count(got, "id: ") != 1 || !strings.HasSuffix(got, "id: c9\n\n") {
		t.Fatalf("conflated:\n%s", got)
	}
}
