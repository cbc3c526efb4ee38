package feed

// Slabs copies updates for keeping: the update and its JSON are cut from
// slabs (one allocation per UpdateSlab updates and per JSONSlab bytes
// instead of two per update). A kept update pins at most one slab of each
// kind, so what a consumer holding one latest value per symbol can pin is
// bounded by symbols × (UpdateSlab updates + JSONSlab bytes), a few KiB each.
// A Slabs is not safe for concurrent use.
type Slabs struct {
	ups []Update
	js  []byte
}

// Slab sizes.
const (
	UpdateSlab = 16
	JSONSlab   = 2048
)

// Keep returns a copy of u whose JSON is a copy too: u (a reader's scratch,
// its JSON a slice of a reply buffer that the next read overwrites) may
// change once the caller returns; the copy never does.
func (s *Slabs) Keep(u *Update) *Update {
	if len(s.ups) == 0 {
		s.ups = make([]Update, UpdateSlab)
	}
	k := &s.ups[0]
	s.ups = s.ups[1:]
	*k = *u
	k.JSON = s.copy(u.JSON)
	return k
}

// copy copies d into the JSON slab (its capacity capped: a kept update's
// JSON cannot be appended to into the next one's).
func (s *Slabs) copy(d []byte) []byte {
	if len(d) > cap(s.js)-len(s.js) {
		s.js = make([]byte, 0, max(JSONSlab, len(d)))
	}
	n := len(s.js)
	s.js = append(s.js, d...)
	return s.js[n:len(s.js):len(s.js)]
}
