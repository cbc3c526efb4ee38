package bars

// ring is a bounded sequence that drops its oldest element when full. Its
// buffer grows as elements arrive, up to max.
type ring[T any] struct {
	buf      []T
	start, n int
	max      int
}

func (r *ring[T]) push(v T) {
	if len(r.buf) < r.max && r.n == len(r.buf) && r.start == 0 {
		r.buf = append(r.buf, v)
		r.n++
		return
	}
	if r.n < len(r.buf) {
		r.buf[r.index(r.n)] = v
		r.n++
		return
	}
	r.buf[r.start] = v
	r.start = r.index(1)
}

// index returns the place in buf of the i-th oldest element (0 ≤ i ≤
// len(buf)): a compare, not a division (one per tick and timeframe).
func (r *ring[T]) index(i int) int {
	j := r.start + i
	if j >= len(r.buf) {
		j -= len(r.buf)
	}
	return j
}

// at returns the i-th oldest element.
func (r *ring[T]) at(i int) T { return r.buf[r.index(i)] }

func (r *ring[T]) ptr(i int) *T { return &r.buf[r.index(i)] }

// slice returns a copy of the elements, oldest first.
func (r *ring[T]) slice() []T {
	out := make([]T, r.n)
	for i := range out {
		out[i] = r.at(i)
	}
	return out
}

// reset empties the ring, keeping its buffer.
func (r *ring[T]) reset() { r.buf, r.start, r.n = r.buf[:0], 0, 0 }
