package tokenizer

import "sync"

// merge is what merging an adjacent pair of symbols gives: the new id and
// its rank. Lower ranks merge first; among equal ranks the leftmost pair
// merges first, which is the order of both Hugging Face's BPE (merge list
// position) and llama2.c/SentencePiece (highest score, leftmost on ties).
type merge struct {
	rank int32
	id   int32
}

// pairTable maps a pair of symbol ids to the result of merging them.
type pairTable map[uint64]merge

func pairKey(a, b int32) uint64 { return uint64(uint32(a))<<32 | uint64(uint32(b)) }

// candidate is a possible merge of symbol left with the symbol after it.
type candidate struct {
	rank        int32
	left, right int32 // symbol positions
	a, b        int32 // ids the two symbols had when the candidate was made
}

// bpeWork holds the scratch slices of one merge run, reused through a pool
// because BPE runs once per pre-tokenized word.
type bpeWork struct {
	id, next, prev []int32
	heap           []candidate
}

var bpePool = sync.Pool{New: func() any { return new(bpeWork) }}

// applyMerges runs BPE over the initial symbols ids with the merges in
// table, appending the final symbols to out. It merges the lowest-ranked
// adjacent pair (leftmost on ties) until no pair merges, using a heap of
// candidates over a linked list so a long word costs O(n log n).
func applyMerges(out []int, ids []int32, table pairTable) []int {
	n := len(ids)
	if n == 0 {
		return out
	}
	if n == 1 {
		return append(out, int(ids[0]))
	}
	w := bpePool.Get().(*bpeWork)
	defer bpePool.Put(w)
	w.id = append(w.id[:0], ids...)
	w.next = w.next[:0]
	w.prev = w.prev[:0]
	for i := 0; i < n; i++ {
		w.next = append(w.next, int32(i+1))
		w.prev = append(w.prev, int32(i-1))
	}
	w.next[n-1] = -1
	h := w.heap[:0]
	for i := 0; i+1 < n; i++ {
		if m, ok := table[pairKey(w.id[i], w.id[i+1])]; ok {
			h = append(h, candidate{m.rank, int32(i), int32(i + 1), w.id[i], w.id[i+1]})
		}
	}
	heapInit(h)
	for len(h) > 0 {
		c := h[0]
		h = heapPop(h)
		// Stale candidates: a symbol was merged away or changed since.
		if w.id[c.left] != c.a || w.next[c.left] != c.right || w.id[c.right] != c.b {
			continue
		}
		m := table[pairKey(c.a, c.b)]
		w.id[c.left] = m.id
		w.id[c.right] = -1
		nx := w.next[c.right]
		w.next[c.left] = nx
		w.next[c.right] = -1
		if nx >= 0 {
			w.prev[nx] = c.left
			if m2, ok := table[pairKey(m.id, w.id[nx])]; ok {
				h = heapPush(h, candidate{m2.rank, c.left, nx, m.id, w.id[nx]})
			}
		}
		if pv := w.prev[c.left]; pv >= 0 {
			if m2, ok := table[pairKey(w.id[pv], m.id)]; ok {
				h = heapPush(h, candidate{m2.rank, pv, c.left, w.id[pv], m.id})
			}
		}
	}
	w.heap = h
	for i := int32(0); i >= 0; i = w.next[i] {
		out = append(out, int(w.id[i]))
	}
	return out
}

func candLess(x, y candidate) bool {
	if x.rank != y.rank {
		return x.rank < y.rank
	}
	return x.left < y.left
}

func heapInit(h []candidate) {
	for i := len(h)/2 - 1; i >= 0; i-- {
		heapDown(h, i)
	}
}

func heapPush(h []candidate, c candidate) []candidate {
	h = append(h, c)
	i := len(h) - 1
	for i > 0 {
		p := (i - 1) / 2
		if !candLess(h[i], h[p]) {
			break
		}
		h[i], h[p] = h[p], h[i]
		i = p
	}
	return h
}

func heapPop(h []candidate) []candidate {
	last := len(h) - 1
	h[0] = h[last]
	h = h[:last]
	heapDown(h, 0)
	return h
}

func heapDown(h []candidate, i int) {
	for {
		l := 2*i + 1
		if l >= len(h) {
			return
		}
		m := l
		if r := l + 1; r < len(h) && candLess(h[r], h[l]) {
			m = r
		}
		if !candLess(h[m], h[i]) {
			return
		}
		h[i], h[m] = h[m], h[i]
		i = m
	}
}

// wordCache remembers the ids of recently encoded words. Natural text
// repeats words a lot, so this skips most BPE runs. It is cleared when full
// rather than evicting one entry at a time: simple and good enough.
type wordCache struct {
	mu  sync.RWMutex
	m   map[string][]int
	max int
}

// maxCachedWord is the longest word (in bytes) worth caching; longer ones
// (whole paragraphs, for tokenizers without a pre-tokenizer) rarely repeat.
const maxCachedWord = 64

func newWordCache(max int) *wordCache {
	return &wordCache{m: make(map[string][]int), max: max}
}

func (c *wordCache) get(k string) ([]int, bool) {
	c.mu.RLock()
	v, ok := c.m[k]
	c.mu.RUnlock()
	return v, ok
}

func (c *wordCache) put(k string, v []int) {
	c.mu.Lock()
	if len(c.m) >= c.max {
		clear(c.m)
	}
	c.m[k] = v
	c.mu.Unlock()
}
