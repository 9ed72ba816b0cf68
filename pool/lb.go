package pool

import "slices"

// The choose functions below run under p.mu with p.cand non-empty and
// return an index into p.cand. p.w holds the effective weight (ratio ×
// slow-ramp factor in thousandths) of each candidate for weighted methods.

// rotationStart returns the first candidate after the one picked last, in
// priority-group order, wrapping around: plain round-robin, and the start
// of the tie-breaking scan for the scoring methods so equal members share.
func (p *Pool) rotationStart() int {
	k, _ := slices.BinarySearch(p.candPos, p.lastPos+1)
	if k == len(p.candPos) {
		return 0
	}
	return k
}

// chooseRatio is nginx's smooth weighted round-robin: every candidate's
// current weight grows by its effective weight, the largest wins and pays
// back the total. Over sum(w) picks each member is chosen w times, evenly
// interleaved (5:1:1 gives a a b a c a a, not a a a a a b c).
func (p *Pool) chooseRatio() int {
	var total int64
	best := 0
	for k, mi := range p.cand {
		p.cw[mi] += p.w[k]
		total += p.w[k]
		if p.cw[mi] > p.cw[p.cand[best]] {
			best = k
		}
	}
	p.cw[p.cand[best]] -= total
	return best
}

// chooseLeastConn picks the lowest (active+1)/weight, HAProxy's leastconn
// key: it honours ratios, lets an idle member win, and makes a ramping
// member (small weight) look busier than it is. Ties go to the first
// candidate after the last pick.
func (p *Pool) chooseLeastConn() int {
	n := len(p.cand)
	start := p.rotationStart()
	best := -1
	var ba, bw int64
	for j := range n {
		k := start + j
		if k >= n {
			k -= n
		}
		a := p.members[p.cand[k]].active.Load() + 1
		w := p.w[k]
		// a/w < ba/bw without division; both sides stay below 2^63 since
		// w <= MaxRatio*1000.
		if best < 0 || a*bw < ba*w {
			best, ba, bw = k, a, w
		}
	}
	return best
}

// chooseFastest picks the lowest latency EWMA × (active+1) / weight. A
// member with no latency sample yet and nothing in flight is chosen first,
// so a new or recovered member is probed by one connection rather than
// flooded; while that probe runs it is scored with the mean latency of the
// sampled members. With no samples at all this is least-connections.
func (p *Pool) chooseFastest() int {
	n := len(p.cand)
	start := p.rotationStart()
	var sum, cnt int64
	for _, mi := range p.cand {
		if l := p.members[mi].latency.Load(); l > 0 {
			sum += l / 1024 // scaled down: the mean needs no ns precision and must not overflow
			cnt++
		}
	}
	mean := 1.0
	if cnt > 0 {
		mean = float64(sum)/float64(cnt)*1024 + 1
	}
	best := -1
	var bs float64
	for j := range n {
		k := start + j
		if k >= n {
			k -= n
		}
		m := p.members[p.cand[k]]
		a := m.active.Load()
		l := float64(m.latency.Load())
		if l == 0 {
			if a == 0 {
				return k
			}
			l = mean
		}
		s := l * float64(a+1) / float64(p.w[k])
		if best < 0 || s < bs {
			best, bs = k, s
		}
	}
	return best
}

// chooseP2C draws two distinct candidates at random, weighted by effective
// weight, and takes the one with the lower (active+1)/weight.
func (p *Pool) chooseP2C() int {
	if len(p.cand) == 1 {
		return 0
	}
	var total int64
	for _, w := range p.w {
		total += w
	}
	k1 := p.weightedDraw(total, -1)
	k2 := p.weightedDraw(total-p.w[k1], k1)
	a1 := p.members[p.cand[k1]].active.Load() + 1
	a2 := p.members[p.cand[k2]].active.Load() + 1
	if a2*p.w[k1] < a1*p.w[k2] {
		return k2
	}
	return k1
}

// weightedDraw returns a candidate index drawn with probability w/total,
// never skip (whose weight total already excludes).
func (p *Pool) weightedDraw(total int64, skip int) int {
	r := p.rng.Int64N(total)
	last := -1
	for k, w := range p.w {
		if k == skip {
			continue
		}
		if r < w {
			return k
		}
		r -= w
		last = k
	}
	return last
}
