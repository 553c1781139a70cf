package cuda

import (
	"fmt"
	"unsafe"

	"github.com/gotune/gotune/engine"
)

// hostSpan is the part of one device storage that a fallback copies to the
// host: elements [lo, hi), mirrored by a CPU tensor of hi-lo elements.
type hostSpan struct {
	lo, hi int
	dtype  engine.DType
	host   *engine.Tensor
}

// fallback runs an operation on the host: it waits for the stream, copies
// every storage range the tensors touch to CPU tensors (one host copy per
// device storage, so views that alias on the device alias on the host
// too), calls run with a function mapping each device tensor to its host
// view, and copies the outputs back. It is correct for every operation and
// slow (two synchronous transfers and a stream drain per call); the
// counters (Backend.Stats) record each use. outs are the tensors the
// operation writes (nil entries allowed); ins those it only reads.
func (b *Backend) fallback(op string, outs, ins []*engine.Tensor, run func(h func(*engine.Tensor) *engine.Tensor)) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.count(op, false)
	if b.broken() {
		return
	}
	spans := map[*storage]*hostSpan{}
	var order []*storage
	for _, t := range append(append([]*engine.Tensor(nil), outs...), ins...) {
		if t == nil {
			continue
		}
		s := b.store(op, t)
		b.ptr(op, t) // panics on a freed tensor
		lo, hi := t.Offset(), t.Offset()+t.Len()
		if sp, ok := spans[s]; ok {
			sp.lo, sp.hi = min(sp.lo, lo), max(sp.hi, hi)
			continue
		}
		spans[s] = &hostSpan{lo: lo, hi: hi, dtype: t.DType()}
		order = append(order, s)
	}
	if err := b.stream.Synchronize(); err != nil {
		b.setErr(err)
		return
	}
	for _, s := range order {
		sp := spans[s]
		n := sp.hi - sp.lo
		sp.host = b.host.Alloc(sp.dtype, n)
		if n == 0 {
			continue
		}
		src := s.l.blk.ptr + DevicePtr(sp.lo*sp.dtype.Size())
		switch sp.dtype {
		case engine.Float32:
			v := make([]float32, n)
			if !b.copyIn(op, unsafe.Pointer(&v[0]), src, 4*n) {
				return
			}
			b.host.Upload(sp.host, v)
		case engine.BFloat16:
			h := make([]uint16, n)
			if !b.copyIn(op, unsafe.Pointer(&h[0]), src, 2*n) {
				return
			}
			v := make([]float32, n)
			for i, x := range h {
				v[i] = bf16ToF32(x) // exact, so the host rounds back to the same bits
			}
			b.host.Upload(sp.host, v)
		case engine.Int32:
			v := make([]int32, n)
			if !b.copyIn(op, unsafe.Pointer(&v[0]), src, 4*n) {
				return
			}
			b.host.UploadInt32(sp.host, v)
		}
	}
	views := map[*engine.Tensor]*engine.Tensor{}
	h := func(t *engine.Tensor) *engine.Tensor {
		if t == nil {
			return nil
		}
		if v, ok := views[t]; ok {
			return v
		}
		sp := spans[b.store(op, t)]
		if sp == nil {
			panic(fmt.Sprintf("cuda.%s: internal error: tensor %v was not listed for the host fallback", op, t))
		}
		v := engine.NewTensor(sp.host.Storage(), t.DType(), t.Offset()-sp.lo, t.Shape()...)
		views[t] = v
		return v
	}
	run(h)
	for _, t := range outs {
		if t == nil || t.Len() == 0 {
			continue
		}
		dst := b.ptr(op, t)
		var err error
		switch t.DType() {
		case engine.Float32:
			v := b.host.Download(h(t))
			err = b.ctx.CopyHtoD(dst, unsafe.Pointer(&v[0]), uint64(4*len(v)))
		case engine.BFloat16:
			v := b.host.Download(h(t))
			u := make([]uint16, len(v))
			for i, x := range v {
				u[i] = f32ToBF16(x)
			}
			err = b.ctx.CopyHtoD(dst, unsafe.Pointer(&u[0]), uint64(2*len(u)))
		case engine.Int32:
			v := b.host.DownloadInt32(h(t))
			err = b.ctx.CopyHtoD(dst, unsafe.Pointer(&v[0]), uint64(4*len(v)))
		}
		if err != nil {
			b.setErr(fmt.Errorf("cuda.%s (host fallback): %w", op, err))
			return
		}
	}
}

// copyIn is a synchronous device-to-host copy that records failures.
func (b *Backend) copyIn(op string, dst unsafe.Pointer, src DevicePtr, bytes int) bool {
	if err := b.ctx.CopyDtoH(dst, src, uint64(bytes)); err != nil {
		b.setErr(fmt.Errorf("cuda.%s (host fallback): %w", op, err))
		return false
	}
	return true
}

// ts is shorthand for a tensor list.
func ts(t ...*engine.Tensor) []*engine.Tensor { return t }
