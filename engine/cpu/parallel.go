package cpu

import (
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
)

// grain is the amount of work (roughly, scalar operations) below which
// spawning goroutines costs more than it saves.
const grain = 1 << 15

// runChunks calls fn(c) for every c in [0, n), spreading the calls over up
// to GOMAXPROCS goroutines (the caller's included). A panic in any call is
// re-raised in the caller, so shape errors inside workers still name their
// operation instead of killing the process from a stray goroutine.
func runChunks(n int, fn func(c int)) {
	if n <= 0 {
		return
	}
	workers := runtime.GOMAXPROCS(0)
	if workers > n {
		workers = n
	}
	if workers <= 1 {
		for c := 0; c < n; c++ {
			fn(c)
		}
		return
	}
	var next atomic.Int64
	var wg sync.WaitGroup
	var firstPanic atomic.Value
	work := func() {
		defer func() {
			if r := recover(); r != nil {
				firstPanic.CompareAndSwap(nil, fmt.Sprint(r))
				next.Store(int64(n)) // stop handing out chunks
			}
		}()
		for {
			c := int(next.Add(1) - 1)
			if c >= n {
				return
			}
			fn(c)
		}
	}
	wg.Add(workers - 1)
	for w := 1; w < workers; w++ {
		go func() {
			defer wg.Done()
			work()
		}()
	}
	work()
	wg.Wait()
	if p := firstPanic.Load(); p != nil {
		panic(p)
	}
}

// parallelFor splits [0, n) into contiguous ranges and calls fn on each,
// in parallel when n·cost (cost = work per item) exceeds a few grains.
// Ranges are as large as possible (about one per worker, more when the
// work is big, for load balance).
func parallelFor(n, cost int, fn func(lo, hi int)) {
	parallelForAligned(n, cost, 1, fn)
}

// parallelForAligned is parallelFor with every range starting at a multiple
// of align. Elementwise loops that hand 8-wide groups to assembly and the
// remainder to scalar code use align = 8, so which code path (and so which
// last-bit rounding) an element gets never depends on the core count.
func parallelForAligned(n, cost, align int, fn func(lo, hi int)) {
	if n <= 0 {
		return
	}
	if cost < 1 {
		cost = 1
	}
	total := n * cost
	workers := runtime.GOMAXPROCS(0)
	if workers <= 1 || total < 2*grain || n == 1 {
		fn(0, n)
		return
	}
	chunks := total / grain
	if chunks > 4*workers {
		chunks = 4 * workers
	}
	if chunks > n {
		chunks = n
	}
	if chunks < 2 {
		fn(0, n)
		return
	}
	size := (n + chunks - 1) / chunks
	size = (size + align - 1) / align * align
	chunks = (n + size - 1) / size
	runChunks(chunks, func(c int) {
		lo := c * size
		hi := min(lo+size, n)
		fn(lo, hi)
	})
}

// fixedChunks splits [0, n) into ranges of exactly size items (the last may
// be shorter) and runs fn(c, lo, hi) on each in parallel. Because the split
// depends only on n and size, reductions that combine per-chunk partial
// results in chunk order are deterministic on any number of cores.
func fixedChunks(n, size int, fn func(c, lo, hi int)) int {
	if n <= 0 {
		return 0
	}
	if size < 1 {
		size = 1
	}
	chunks := (n + size - 1) / size
	runChunks(chunks, func(c int) {
		lo := c * size
		fn(c, lo, min(lo+size, n))
	})
	return chunks
}
