package cpu

import (
	"fmt"
	"runtime"
	"sync/atomic"

	"github.com/gotune/gotune/engine"
)

// Backend is the pure-Go implementation of engine.Backend. The zero value is
// not usable; call New. Its only mutable state are atomic memory counters,
// so it may be shared by goroutines as long as they do not write the same
// tensors.
type Backend struct {
	inUse, peak atomic.Uint64 // see MemoryStats
}

// New returns a CPU backend using GOMAXPROCS worker goroutines.
func New() *Backend { return &Backend{} }

var (
	_ engine.Backend        = (*Backend)(nil)
	_ engine.MemoryReporter = (*Backend)(nil)
)

// Name identifies the backend.
func (b *Backend) Name() string { return "cpu" }

// Close releases nothing: storage is garbage-collected Go memory.
func (b *Backend) Close() error { return nil }

// Synchronize returns nil: every CPU operation completes before it returns
// and reports shape errors by panicking at the call.
func (b *Backend) Synchronize() error { return nil }

// storage is one host buffer; exactly one of the slices is in use, chosen by
// dtype.
type storage struct {
	owner *Backend
	dtype engine.DType
	n     int
	f32   []float32
	u16   []uint16
	i32   []int32
	acct  *memAcct
}

// memAcct is the size a storage counts in its backend's InUse until Free
// or the garbage collector releases it, whichever comes first (it is a
// separate object so that the collector's cleanup may refer to it).
type memAcct struct{ bytes atomic.Uint64 }

// MemoryStats reports the tensor storage this backend allocated and has
// not released: Alloc adds a tensor's bytes, Free or the garbage
// collector's reclaiming of an unreachable tensor subtracts them (so an
// unreachable tensor counts until a collection runs). Go memory used
// inside operations (packing buffers, host copies) is not counted.
// Reserved equals InUse.
func (b *Backend) MemoryStats() engine.MemoryStats {
	in := b.inUse.Load()
	return engine.MemoryStats{InUse: in, Peak: max(b.peak.Load(), in), Reserved: in}
}

// ResetPeakMemory sets the peak to the memory in use now.
func (b *Backend) ResetPeakMemory() { b.peak.Store(b.inUse.Load()) }

// account adds bytes to InUse and raises the peak.
func (b *Backend) account(s *storage, bytes uint64) {
	s.acct = &memAcct{}
	s.acct.bytes.Store(bytes)
	in := b.inUse.Add(bytes)
	for p := b.peak.Load(); in > p && !b.peak.CompareAndSwap(p, in); p = b.peak.Load() {
	}
	runtime.AddCleanup(s, b.release, s.acct)
}

// release subtracts a storage's bytes once.
func (b *Backend) release(a *memAcct) {
	if n := a.bytes.Swap(0); n > 0 {
		b.inUse.Add(-n)
	}
}

// Backend returns the CPU backend that allocated the buffer.
func (s *storage) Backend() engine.Backend { return s.owner }

// Len returns the capacity in elements.
func (s *storage) Len() int { return s.n }

// Alloc returns a new zero-filled tensor.
func (b *Backend) Alloc(dtype engine.DType, shape ...int) *engine.Tensor {
	for _, d := range shape {
		if d < 0 {
			panic(fmt.Sprintf("cpu.Alloc: negative dimension in shape %v", shape))
		}
	}
	n := engine.Numel(shape)
	s := &storage{owner: b, dtype: dtype, n: n}
	switch dtype {
	case engine.Float32:
		s.f32 = make([]float32, n)
	case engine.BFloat16:
		s.u16 = make([]uint16, n)
	case engine.Int32:
		s.i32 = make([]int32, n)
	default:
		panic(fmt.Sprintf("cpu.Alloc: unsupported dtype %v", dtype))
	}
	b.account(s, uint64(n)*uint64(dtype.Size()))
	return engine.NewTensor(s, dtype, 0, shape...)
}

// Free drops the buffer so the garbage collector can reclaim it; any view
// of it used afterwards panics.
func (b *Backend) Free(t *engine.Tensor) {
	if t == nil {
		return
	}
	s := storeOf("Free", t)
	s.f32, s.u16, s.i32 = nil, nil, nil
	if s.acct != nil {
		s.owner.release(s.acct)
	}
}

// storeOf returns t's CPU storage, panicking with the operation's name when t
// lives on another backend or was freed.
func storeOf(op string, t *engine.Tensor) *storage {
	if t == nil {
		panic(fmt.Sprintf("cpu.%s: nil tensor", op))
	}
	s, ok := t.Storage().(*storage)
	if !ok {
		panic(fmt.Sprintf("cpu.%s: tensor %v is not on the CPU backend (storage %T)", op, t, t.Storage()))
	}
	if s.f32 == nil && s.u16 == nil && s.i32 == nil && s.n > 0 {
		panic(fmt.Sprintf("cpu.%s: tensor %v was freed", op, t))
	}
	return s
}

// Float32s returns the live data window of a CPU Float32 tensor: writes to
// the slice change the tensor. It exists for tests and host-side tools
// (checkpoint writers, debuggers); model and method code must not use it,
// since it ties the code to the CPU backend — use Backend.Download instead.
// It panics if t is not a Float32 tensor of this package.
func Float32s(t *engine.Tensor) []float32 {
	return f32s("Float32s", t)
}

// Int32s returns the live data window of a CPU Int32 tensor, with the same
// caveats as Float32s.
func Int32s(t *engine.Tensor) []int32 {
	s := storeOf("Int32s", t)
	if t.DType() != engine.Int32 {
		panic(fmt.Sprintf("cpu.Int32s: tensor %v is not Int32", t))
	}
	return s.i32[t.Offset() : t.Offset()+t.Len() : t.Offset()+t.Len()]
}

// f32s returns the window of a Float32 tensor.
func f32s(op string, t *engine.Tensor) []float32 {
	s := storeOf(op, t)
	if t.DType() != engine.Float32 {
		panic(fmt.Sprintf("cpu.%s: tensor %v must be F32", op, t))
	}
	return s.f32[t.Offset() : t.Offset()+t.Len() : t.Offset()+t.Len()]
}

// u16s returns the window of a BFloat16 tensor.
func u16s(op string, t *engine.Tensor) []uint16 {
	s := storeOf(op, t)
	if t.DType() != engine.BFloat16 {
		panic(fmt.Sprintf("cpu.%s: tensor %v must be BF16", op, t))
	}
	return s.u16[t.Offset() : t.Offset()+t.Len() : t.Offset()+t.Len()]
}

// read returns t's values as float32: the live window for Float32, a
// converted copy for BFloat16. Callers must not write to the result.
func read(op string, t *engine.Tensor) []float32 {
	switch t.DType() {
	case engine.Float32:
		return f32s(op, t)
	case engine.BFloat16:
		src := u16s(op, t)
		dst := make([]float32, len(src))
		bf16ToF32(dst, src)
		return dst
	default:
		panic(fmt.Sprintf("cpu.%s: tensor %v must be F32 or BF16", op, t))
	}
}

// readOpt is read for optional (nil-able) tensors.
func readOpt(op string, t *engine.Tensor) []float32 {
	if t == nil {
		return nil
	}
	return read(op, t)
}

// write returns a float32 buffer holding t's current values and a function
// that stores the buffer back into t. For Float32 the buffer is the live
// window and the function does nothing; for BFloat16 it is a converted copy
// rounded back on commit. A nil t gives a nil buffer.
func write(op string, t *engine.Tensor) ([]float32, func()) {
	if t == nil {
		return nil, func() {}
	}
	switch t.DType() {
	case engine.Float32:
		return f32s(op, t), func() {}
	case engine.BFloat16:
		dst := u16s(op, t)
		buf := make([]float32, len(dst))
		bf16ToF32(buf, dst)
		return buf, func() { f32ToBF16(dst, buf) }
	default:
		panic(fmt.Sprintf("cpu.%s: tensor %v must be F32 or BF16", op, t))
	}
}

// i32s returns the window of an Int32 tensor.
func i32s(op string, t *engine.Tensor) []int32 {
	s := storeOf(op, t)
	if t.DType() != engine.Int32 {
		panic(fmt.Sprintf("cpu.%s: tensor %v must be I32", op, t))
	}
	return s.i32[t.Offset() : t.Offset()+t.Len() : t.Offset()+t.Len()]
}

// check panics with a message naming the operation when cond is false.
func check(cond bool, op, format string, args ...any) {
	if !cond {
		panic(fmt.Sprintf("cpu.%s: %s", op, fmt.Sprintf(format, args...)))
	}
}

// sameLen panics unless every tensor has n elements.
func sameLen(op string, n int, ts ...*engine.Tensor) {
	for _, t := range ts {
		if t != nil && t.Len() != n {
			panic(fmt.Sprintf("cpu.%s: tensor %v has %d elements, want %d", op, t, t.Len(), n))
		}
	}
}
