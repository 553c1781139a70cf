package data

import (
	"fmt"
	"math/bits"
	"math/rand/v2"
)

// LoaderConfig configures batching.
type LoaderConfig struct {
	// BatchSize is the number of sequences per batch (> 0).
	BatchSize int
	// SeqLen is the maximum sequence length (> 0): longer examples are
	// truncated (keeping the start) and counted in Stats.Truncated.
	SeqLen int
	// Shuffle draws a new seeded permutation of the examples each epoch;
	// false keeps file order, so a batch is consecutive lines.
	Shuffle bool
	// Seed seeds the permutations (epoch e uses a generator seeded from
	// Seed and e, so epochs differ and runs repeat).
	Seed uint64
	// PadID is the input id of padding positions (their labels are
	// IgnoreIndex, so its value does not change the loss).
	PadID int32
	// PadToSeqLen pads every batch to SeqLen tokens. When false a batch is
	// as long as its longest sequence, which wastes less compute and gives
	// the same losses and gradients (padding is on the right, under a
	// causal mask, with ignored labels).
	PadToSeqLen bool
	// Packing lays several examples end to end in each sequence of at
	// most SeqLen tokens (see Pack) and fills Batch.Segments and
	// Batch.Positions, so the model keeps attention inside each example
	// and restarts its positions: every example's loss and gradient are
	// those it has alone, with less padding and fewer batches. Shuffle
	// permutes the packed sequences, which are fixed at load.
	Packing bool
}

// Stats describes what the loader did to the dataset.
type Stats struct {
	// Sequences is the number of examples in the dataset.
	Sequences int
	// Truncated counts examples longer than SeqLen.
	Truncated int
	// Skipped counts examples with no scored target after truncation
	// (one token long, or all labels ignored); they would add nothing
	// but padding, and a batch of only such rows has no loss.
	Skipped int
	// SeqLen is the configured maximum length.
	SeqLen int
	// Packed is the number of packed sequences the usable examples were
	// laid into (0 without LoaderConfig.Packing).
	Packed int
	// Tokens is the number of tokens of the usable examples after
	// truncation.
	Tokens int
}

// TruncationMessage returns the log line reporting truncation, e.g.
// "truncated 3 of 100 sequences to seq-len 512".
func (s Stats) TruncationMessage() string {
	return fmt.Sprintf("truncated %d of %d sequences to seq-len %d", s.Truncated, s.Sequences, s.SeqLen)
}

// PackingMessage returns the log line reporting packing, e.g. "packed
// 1000 examples into 96 sequences of at most 512 tokens (93.1% full)".
func (s Stats) PackingMessage() string {
	usable := s.Sequences - s.Skipped
	fill := 100 * float64(s.Tokens) / float64(max(s.Packed*s.SeqLen, 1))
	return fmt.Sprintf("packed %d examples into %d sequences of at most %d tokens (%.1f%% full)", usable, s.Packed, s.SeqLen, fill)
}

// Batch is one batch of B sequences of T tokens as host arrays, ready
// for upload into an engine.Batch.
type Batch struct {
	B, T int
	// InputIDs is [B*T], row-major; padding positions hold PadID.
	InputIDs []int32
	// Targets is [B*T]: Targets[b*T+t] = labels[b][t+1] (the next-token
	// label the logits at t are scored against), IgnoreIndex at the last
	// position of every row and on padding.
	Targets []int32
	// Counted is the number of targets that are not IgnoreIndex.
	Counted int
	// Segments is [B*T] with packing (nil otherwise): the index of the
	// example each token belongs to within its row (0, 1, ...), padding
	// after the row's last example counting as one more. Targets never
	// cross from one segment into the next.
	Segments []int32
	// Positions is [B*T] with packing (nil otherwise): each token's
	// position within its example (padding: within the padding), from 0.
	Positions []int32
	// FirstLabels is [B]: labels[b][0] of every row, the label no
	// next-token target covers. Models with virtual tokens in front of
	// the sequence (prompt tuning, P-Tuning) score it as PEFT does, against
	// the last virtual token's logits; others ignore it. Packed rows hold
	// several examples, so their first labels are IgnoreIndex.
	FirstLabels []int32
	// CountedFirst is the number of FirstLabels that are not IgnoreIndex
	// (not included in Counted).
	CountedFirst int
	// Epoch is the 0-based epoch the batch belongs to.
	Epoch int
	// Index is the 0-based position of the batch within its epoch.
	Index int
	// Rows are the dataset indices of the B examples, in order (without
	// packing; nil with it).
	Rows []int
	// Packs are, with packing, the dataset indices of each row's
	// examples in the order they appear (nil without packing).
	Packs [][]int
}

// Loader cuts a dataset into batches, epoch after epoch.
//
// An epoch visits every usable example exactly once. The last batch of an
// epoch is kept even when it has fewer than BatchSize rows (as the
// Hugging Face Trainer does by default): dropping it would silently never
// train on some examples when the dataset is not shuffled. Because the
// trainer averages over counted tokens, a smaller batch needs no special
// weighting.
type Loader struct {
	cfg   LoaderConfig
	ex    []Example // truncated views of the usable examples
	index []int     // dataset index of each entry of ex
	// seqs are the sequences an epoch permutes: each lists the entries
	// of ex laid end to end in it (one each without packing).
	seqs  [][]int
	stats Stats

	permEpoch int
	perm      []int

	epoch, pos int // Next's cursor
}

// NewLoader truncates the dataset's examples to cfg.SeqLen, drops those
// with no scored target (reported in Stats), and returns a loader
// positioned at the first batch of epoch 0.
func NewLoader(ds *Dataset, cfg LoaderConfig) (*Loader, error) {
	if cfg.BatchSize <= 0 {
		return nil, fmt.Errorf("batch size must be positive, got %d", cfg.BatchSize)
	}
	if cfg.SeqLen < 2 {
		return nil, fmt.Errorf("seq-len must be at least 2 (one input and one target), got %d", cfg.SeqLen)
	}
	l := &Loader{cfg: cfg, permEpoch: -1}
	l.stats = Stats{Sequences: len(ds.Examples), SeqLen: cfg.SeqLen}
	for i := range ds.Examples {
		e := ds.Examples[i]
		if len(e.InputIDs) > cfg.SeqLen {
			l.stats.Truncated++
			e.InputIDs = e.InputIDs[:cfg.SeqLen]
			e.Labels = e.Labels[:cfg.SeqLen]
		}
		if e.Targets(len(e.InputIDs)) == 0 {
			l.stats.Skipped++
			continue
		}
		l.ex = append(l.ex, e)
		l.index = append(l.index, i)
		l.stats.Tokens += len(e.InputIDs)
	}
	if len(l.ex) == 0 {
		return nil, Errorf(Loc{File: ds.Name}, "no example has a token to train on after truncation to seq-len %d (every example is one token long or has all labels -100 after the first token)", cfg.SeqLen)
	}
	if cfg.Packing {
		lengths := make([]int, len(l.ex))
		for k := range l.ex {
			lengths[k] = len(l.ex[k].InputIDs)
		}
		l.seqs = Pack(lengths, cfg.SeqLen)
		l.stats.Packed = len(l.seqs)
	} else {
		l.seqs = make([][]int, len(l.ex))
		for k := range l.seqs {
			l.seqs[k] = []int{k}
		}
	}
	return l, nil
}

// Stats reports truncation and skipped examples.
func (l *Loader) Stats() Stats { return l.stats }

// Examples returns the number of usable examples (one epoch).
func (l *Loader) Examples() int { return len(l.ex) }

// Sequences returns the number of sequences of one epoch: the usable
// examples, or with packing the packed sequences.
func (l *Loader) Sequences() int { return len(l.seqs) }

// BatchesPerEpoch returns the number of batches in one epoch, counting a
// final partial batch.
func (l *Loader) BatchesPerEpoch() int {
	return (len(l.seqs) + l.cfg.BatchSize - 1) / l.cfg.BatchSize
}

// EpochSlots returns B·T summed over the batches of epoch e: the token
// positions the model computes, of which Stats().Tokens are examples'
// tokens and the rest padding.
func (l *Loader) EpochSlots(epoch int) int {
	order := l.order(epoch)
	slots := 0
	for start := 0; start < len(order); start += l.cfg.BatchSize {
		rows := order[start:min(start+l.cfg.BatchSize, len(order))]
		slots += len(rows) * l.batchLen(rows)
	}
	return slots
}

// batchLen returns T of a batch of the given sequences: SeqLen, or their
// longest length.
func (l *Loader) batchLen(rows []int) int {
	if l.cfg.PadToSeqLen {
		return l.cfg.SeqLen
	}
	T := 0
	for _, s := range rows {
		T = max(T, l.seqLen(s))
	}
	return T
}

// seqLen returns the number of tokens of sequence s.
func (l *Loader) seqLen(s int) int {
	n := 0
	for _, k := range l.seqs[s] {
		n += len(l.ex[k].InputIDs)
	}
	return n
}

// Next returns the next batch, moving on to the next epoch (and its
// permutation) after the last batch of an epoch.
func (l *Loader) Next() Batch {
	if l.pos >= l.BatchesPerEpoch() {
		l.epoch++
		l.pos = 0
	}
	b := l.Batch(l.epoch, l.pos)
	l.pos++
	return b
}

// Seek positions Next at batch i of epoch e (for resuming).
func (l *Loader) Seek(epoch, i int) {
	l.epoch, l.pos = epoch, i
}

// Batch returns batch i (0-based) of epoch e. It is deterministic: the
// same configuration, epoch and index always give the same batch.
func (l *Loader) Batch(epoch, i int) Batch {
	n := len(l.seqs)
	start := i * l.cfg.BatchSize
	end := min(start+l.cfg.BatchSize, n)
	if i < 0 || start >= n {
		panic(fmt.Sprintf("data: batch %d of an epoch with %d batches", i, l.BatchesPerEpoch()))
	}
	rows := l.order(epoch)[start:end]
	B, T := len(rows), l.batchLen(rows)
	b := Batch{
		B: B, T: T,
		InputIDs: make([]int32, B*T),
		Targets:  make([]int32, B*T),
		Epoch:    epoch, Index: i,
		FirstLabels: make([]int32, B),
	}
	if l.cfg.Packing {
		b.Segments, b.Positions = make([]int32, B*T), make([]int32, B*T)
		b.Packs = make([][]int, B)
	} else {
		b.Rows = make([]int, B)
	}
	for r, s := range rows {
		l.fillRow(&b, r, l.seqs[s])
	}
	return b
}

// fillRow lays the examples seq (entries of l.ex) into row r of b, end to
// end, and pads the rest of the row.
func (l *Loader) fillRow(b *Batch, r int, seq []int) {
	T := b.T
	in, tg := b.InputIDs[r*T:(r+1)*T], b.Targets[r*T:(r+1)*T]
	var segs, pos []int32
	if b.Segments != nil {
		segs, pos = b.Segments[r*T:(r+1)*T], b.Positions[r*T:(r+1)*T]
		b.Packs[r] = make([]int, len(seq))
		b.FirstLabels[r] = IgnoreIndex
	} else {
		b.Rows[r] = l.index[seq[0]]
		b.FirstLabels[r] = l.ex[seq[0]].Labels[0]
		if b.FirstLabels[r] != IgnoreIndex {
			b.CountedFirst++
		}
	}
	at := 0
	for j, k := range seq {
		e := &l.ex[k]
		n := copy(in[at:], e.InputIDs)
		for t := 0; t < n; t++ {
			tg[at+t] = IgnoreIndex
			if t+1 < n {
				tg[at+t] = e.Labels[t+1]
			}
			if tg[at+t] != IgnoreIndex {
				b.Counted++
			}
		}
		if segs != nil {
			b.Packs[r][j] = l.index[k]
			for t := 0; t < n; t++ {
				segs[at+t], pos[at+t] = int32(j), int32(t)
			}
		}
		at += n
	}
	for t := at; t < T; t++ {
		in[t], tg[t] = l.cfg.PadID, IgnoreIndex
		if segs != nil {
			segs[t], pos[t] = int32(len(seq)), int32(t-at)
		}
	}
}

// order returns the sequence order of an epoch: identity without shuffle,
// else a permutation cached for the most recent epoch asked for.
func (l *Loader) order(epoch int) []int {
	if l.perm == nil || l.permEpoch != epoch {
		l.perm = make([]int, len(l.seqs))
		for i := range l.perm {
			l.perm[i] = i
		}
		if l.cfg.Shuffle {
			Permute(l.perm, l.cfg.Seed, uint64(epoch))
		}
		l.permEpoch = epoch
	}
	return l.perm
}

// Permute shuffles p in place with a Fisher–Yates shuffle driven by a PCG
// generator seeded with (seed, stream). It uses only the generator's raw
// 64-bit outputs and its own unbiased bounded draw, so a given seed
// gives the same order on every platform and Go release.
func Permute(p []int, seed, stream uint64) {
	rng := rand.NewPCG(seed, stream^0x9e3779b97f4a7c15)
	for i := len(p) - 1; i > 0; i-- {
		j := int(boundedDraw(rng, uint64(i+1)))
		p[i], p[j] = p[j], p[i]
	}
}

// boundedDraw returns a uniform value in [0, n) by Lemire's multiply-shift
// method with rejection of the biased low products.
func boundedDraw(rng *rand.PCG, n uint64) uint64 {
	hi, lo := bits.Mul64(rng.Uint64(), n)
	if lo < n {
		thresh := -n % n
		for lo < thresh {
			hi, lo = bits.Mul64(rng.Uint64(), n)
		}
	}
	return hi
}
