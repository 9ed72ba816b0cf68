package mux

// queue is a byte FIFO that reuses its memory: bytes are appended at the
// back and consumed from the front; the live bytes move to the front only
// when the array is full. While a slice of the live bytes is in use
// outside the lock (pinned: the writer encoding a frame), they are not
// moved in place: a second array takes over, and the two alternate, so a
// steady stream allocates nothing.
type queue struct {
	b      []byte
	off    int
	pinned []byte // the array a pinned slice points into, or nil
	spare  []byte // a free array to move into
}

func (q *queue) len() int { return len(q.b) - q.off }

func (q *queue) bytes() []byte { return q.b[q.off:] }

// pin returns the live bytes; they stay valid until unpin.
func (q *queue) pin() []byte {
	q.pinned = q.b
	return q.b[q.off:]
}

// unpin ends a pin; an array the queue moved away from becomes the spare.
func (q *queue) unpin() {
	if cap(q.pinned) > 0 && (cap(q.b) == 0 || &q.pinned[:1][0] != &q.b[:1][0]) {
		q.spare = q.pinned[:0]
	}
	q.pinned = nil
}

func (q *queue) push(p []byte) {
	if len(q.b)+len(p) > cap(q.b) && q.off > 0 {
		live := q.b[q.off:]
		if q.pinned != nil || len(live)+len(p) > cap(q.b) {
			// Another array, holding only the live bytes.
			need := len(live) + len(p)
			nb := q.spare
			q.spare = nil
			if cap(nb) < need {
				nb = make([]byte, 0, max(2*need, 512<<10))
			}
			q.b = append(nb[:0], live...)
		} else {
			q.b = q.b[:copy(q.b, live)]
		}
		q.off = 0
	}
	q.b = append(q.b, p...)
}

func (q *queue) pop(n int) {
	q.off += n
	if q.off == len(q.b) {
		// Keep the array: a stream that drained its queue usually fills it
		// again at once, and the window bounds its size. It goes with the
		// stream (reset).
		q.off = 0
		q.b = q.b[:0]
	}
}

func (q *queue) reset() { *q = queue{} }
