package cuda

import (
	"fmt"
	"math"
	"math/bits"
	"runtime"
	"sort"
	"strings"
	"sync"
	"unsafe"

	"github.com/gotune/gotune/engine"
	"github.com/gotune/gotune/engine/cpu"
)

// Backend implements engine.Backend on one CUDA device.
//
// All work is queued on one stream, so operations run in the order they are
// called and Download/Synchronize wait for everything before them. Device
// memory comes from a caching allocator: a freed (or garbage-collected)
// buffer goes back to a per-size free list and is handed out again; because
// every user is on the same stream, reuse is ordered after the last
// operation that touched the old tensor, with no synchronisation.
//
// Errors: shape errors panic at the call, as the engine contract says.
// Driver errors (a failed launch, out of memory) are recorded; from then on
// every operation is skipped, Download returns NaNs, and Synchronize
// returns the first error.
//
// A Backend is safe for use by several goroutines (calls are serialised),
// though one stream gives no parallelism between them.
type Backend struct {
	ctx    *Context
	stream *Stream
	mod    *Module
	fns    []*Function // indexed by kernel id
	attrs  []FuncAttributes
	host   *cpu.Backend // fallback implementation
	name   string

	mu     sync.Mutex
	err    error
	closed bool

	pool   allocPool
	statMu sync.Mutex
	stats  map[string]*OpStats
}

var (
	_ engine.Backend        = (*Backend)(nil)
	_ engine.MemoryReporter = (*Backend)(nil)
)

// Options configure NewBackend.
type Options struct {
	// Device is the device ordinal (default 0).
	Device int
	// Image overrides the embedded kernel fatbin (tests, experiments).
	Image []byte
}

// NewBackend opens device opts.Device, creates its stream and loads the
// kernels. It fails with a descriptive error when the driver is missing,
// the device does not exist or is too old, or the kernels do not load.
func NewBackend(opts Options) (*Backend, error) {
	ctx, err := OpenContext(opts.Device)
	if err != nil {
		return nil, err
	}
	info := ctx.Info()
	if info.ComputeCapability() < MinComputeCapability {
		ctx.Close()
		return nil, fmt.Errorf("cuda: device %d %s has compute capability %d.%d; gotune's kernels need %d.%d or newer",
			info.Ordinal, info.Name, info.Major, info.Minor, MinComputeCapability/10, MinComputeCapability%10)
	}
	b := &Backend{ctx: ctx, host: cpu.New(), stats: map[string]*OpStats{},
		name: fmt.Sprintf("cuda:%d %s", info.Ordinal, info.Name)}
	b.pool.init()
	fail := func(err error) (*Backend, error) {
		b.release()
		return nil, err
	}
	if b.stream, err = ctx.NewStream(); err != nil {
		return fail(err)
	}
	image := opts.Image
	if image == nil {
		image = kernelImage()
	}
	if len(image) == 0 {
		return fail(fmt.Errorf("cuda: no kernel image is embedded in this binary (run `make kernels`)"))
	}
	if b.mod, err = ctx.LoadModule(image); err != nil {
		return fail(fmt.Errorf("cuda: loading gotune's kernels on %s: %w", b.name, err))
	}
	if err := b.loadFunctions(); err != nil {
		return fail(err)
	}
	return b, nil
}

// Name identifies the backend, e.g. "cuda:0 NVIDIA H200".
func (b *Backend) Name() string { return b.name }

// Context returns the device context (for benchmarks and tools).
func (b *Backend) Context() *Context { return b.ctx }

// Stream returns the stream every operation is queued on.
func (b *Backend) Stream() *Stream { return b.stream }

// Close waits for queued work, frees cached and live device memory the
// backend knows of, and releases the context. Tensors of this backend are
// invalid afterwards.
func (b *Backend) Close() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return nil
	}
	var first error
	if b.stream != nil {
		first = b.stream.Synchronize()
	}
	if err := b.release(); err != nil && first == nil {
		first = err
	}
	b.closed = true
	return first
}

// release frees everything NewBackend made; used by Close and failed opens.
func (b *Backend) release() error {
	var first error
	keep := func(err error) {
		if err != nil && first == nil {
			first = err
		}
	}
	keep(b.pool.drain(b.ctx, true))
	if b.mod != nil {
		keep(b.mod.Unload())
	}
	if b.stream != nil {
		keep(b.stream.Destroy())
	}
	keep(b.ctx.Close())
	return first
}

// Synchronize waits for all queued work and returns (and clears) the first
// error since the last call.
func (b *Backend) Synchronize() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return fmt.Errorf("cuda: Synchronize on a closed backend")
	}
	b.setErr(b.stream.Synchronize())
	err := b.err
	b.err = nil
	return err
}

// Err returns the first recorded error without clearing it.
func (b *Backend) Err() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.err
}

// setErr records err if it is the first. Callers hold b.mu.
func (b *Backend) setErr(err error) {
	if err != nil && b.err == nil {
		b.err = err
	}
}

// broken reports whether operations must be skipped. Callers hold b.mu.
func (b *Backend) broken() bool {
	if b.closed {
		panic("cuda: operation on a closed backend")
	}
	return b.err != nil
}

// ---- statistics ----

// OpStats counts how an operation ran.
type OpStats struct {
	// Native counts calls that ran our kernels (or driver copies).
	Native int64
	// Fallback counts calls that went through the host CPU implementation.
	Fallback int64
}

// Stats returns a copy of the per-operation counters.
func (b *Backend) Stats() map[string]OpStats {
	b.statMu.Lock()
	defer b.statMu.Unlock()
	out := make(map[string]OpStats, len(b.stats))
	for k, v := range b.stats {
		out[k] = *v
	}
	return out
}

// StatsSummary lists operations that fell back to the host, e.g.
// "CopyBlock×2, RMSNorm×12", or "" when none did.
func (b *Backend) StatsSummary() string {
	st := b.Stats()
	var parts []string
	for k, v := range st {
		if v.Fallback > 0 {
			parts = append(parts, fmt.Sprintf("%s×%d", k, v.Fallback))
		}
	}
	sort.Strings(parts)
	return strings.Join(parts, ", ")
}

func (b *Backend) count(op string, native bool) {
	b.statMu.Lock()
	s := b.stats[op]
	if s == nil {
		s = &OpStats{}
		b.stats[op] = s
	}
	if native {
		s.Native++
	} else {
		s.Fallback++
	}
	b.statMu.Unlock()
}

// ---- storage ----

// storage is one device buffer.
type storage struct {
	b     *Backend
	l     *lease
	n     int // elements
	dtype engine.DType
}

// Backend returns the owning backend.
func (s *storage) Backend() engine.Backend { return s.b }

// Len returns the capacity in elements.
func (s *storage) Len() int { return s.n }

// block is a device allocation owned by the pool.
type block struct {
	ptr   DevicePtr
	class uint64
}

// lease is one use of a block by one storage. The block goes back to the
// pool when the lease ends, by an explicit Free or by the garbage
// collector's cleanup of the storage, whichever comes first: the lease, not
// the block, remembers that, so a block handed to a new storage after Free
// is not returned a second time by the old storage's cleanup.
type lease struct {
	blk  *block
	done bool
}

// allocPool caches freed device blocks by size class.
type allocPool struct {
	mu    sync.Mutex
	free  map[uint64][]*block
	live  map[*block]struct{}
	bytes uint64 // total allocated from the driver, cached or live
	inUse uint64 // bytes of live blocks (size classes, as leased)
	peak  uint64 // the largest inUse since init or resetPeak
}

// lent marks blk live and counts it. Callers hold p.mu.
func (p *allocPool) lent(blk *block) {
	p.live[blk] = struct{}{}
	p.inUse += blk.class
	p.peak = max(p.peak, p.inUse)
}

// stats returns the pool's counters.
func (p *allocPool) stats() engine.MemoryStats {
	p.mu.Lock()
	defer p.mu.Unlock()
	return engine.MemoryStats{InUse: p.inUse, Peak: p.peak, Reserved: p.bytes}
}

func (p *allocPool) init() {
	p.free = map[uint64][]*block{}
	p.live = map[*block]struct{}{}
}

// sizeClass rounds a request so that blocks are reusable across nearby
// sizes: 512 B granules up to 1 MiB, then eighths of the power of two
// below the size (at most 12.5% waste).
func sizeClass(bytes uint64) uint64 {
	if bytes == 0 {
		bytes = 1
	}
	if bytes <= 1<<20 {
		return (bytes + 511) &^ 511
	}
	step := (uint64(1) << (bits.Len64(bytes) - 1)) / 8
	return (bytes + step - 1) / step * step
}

// get returns a lease on a block of at least bytes, from the cache or the
// driver. On out-of-memory it waits for the stream, frees the cache and
// retries once.
func (p *allocPool) get(b *Backend, bytes uint64) (*lease, error) {
	class := sizeClass(bytes)
	p.mu.Lock()
	if l := p.free[class]; len(l) > 0 {
		blk := l[len(l)-1]
		p.free[class] = l[:len(l)-1]
		p.lent(blk)
		p.mu.Unlock()
		return &lease{blk: blk}, nil
	}
	p.mu.Unlock()
	ptr, err := b.ctx.MemAlloc(class)
	if IsOutOfMemory(err) {
		if serr := b.stream.Synchronize(); serr != nil {
			return nil, serr
		}
		if derr := p.drain(b.ctx, false); derr != nil {
			return nil, derr
		}
		ptr, err = b.ctx.MemAlloc(class)
	}
	if err != nil {
		return nil, err
	}
	blk := &block{ptr: ptr, class: class}
	p.mu.Lock()
	p.lent(blk)
	p.bytes += class
	p.mu.Unlock()
	return &lease{blk: blk}, nil
}

// put ends a lease and caches its block.
func (p *allocPool) put(l *lease) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if l.done {
		return
	}
	l.done = true
	if l.blk == nil {
		return
	}
	if _, ok := p.live[l.blk]; !ok {
		return // already freed by Close
	}
	delete(p.live, l.blk)
	p.inUse -= l.blk.class
	p.free[l.blk.class] = append(p.free[l.blk.class], l.blk)
}

// drain frees cached blocks (and live ones too when all is set, at Close).
func (p *allocPool) drain(ctx *Context, all bool) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	var first error
	for class, l := range p.free {
		for _, blk := range l {
			if err := ctx.MemFree(blk.ptr); err != nil && first == nil {
				first = err
			}
			p.bytes -= blk.class
		}
		delete(p.free, class)
	}
	if all {
		for blk := range p.live {
			if err := ctx.MemFree(blk.ptr); err != nil && first == nil {
				first = err
			}
			p.bytes -= blk.class
			p.inUse -= blk.class
		}
		p.live = map[*block]struct{}{}
	}
	return first
}

// MemoryInUse returns the bytes of device memory held from the driver
// (live tensors plus the allocator's cache).
func (b *Backend) MemoryInUse() uint64 {
	b.pool.mu.Lock()
	defer b.pool.mu.Unlock()
	return b.pool.bytes
}

// MemoryStats reports the allocator's counters: InUse is the device
// memory leased to live tensors (in the allocator's size classes, so up to
// 12.5% above the tensors' own sizes), Peak its largest value since the
// backend opened or ResetPeakMemory, Reserved what is held from the
// driver (InUse plus the cache of freed blocks).
func (b *Backend) MemoryStats() engine.MemoryStats { return b.pool.stats() }

// ResetPeakMemory sets the peak to the memory in use now.
func (b *Backend) ResetPeakMemory() {
	b.pool.mu.Lock()
	defer b.pool.mu.Unlock()
	b.pool.peak = b.pool.inUse
}

// Alloc returns a new zero-filled tensor in device memory. Running out of
// device memory is recorded as the backend's error (see Synchronize), an
// *engine.OutOfMemoryError, and the returned tensor then has no usable
// storage.
func (b *Backend) Alloc(dtype engine.DType, shape ...int) *engine.Tensor {
	b.mu.Lock()
	defer b.mu.Unlock()
	t := b.alloc("Alloc", dtype, shape...)
	if !b.broken() && t.Len() > 0 {
		bytes := uint64(t.Len() * dtype.Size())
		p := b.ptr("Alloc", t)
		if bytes%4 == 0 {
			b.setErr(b.ctx.Memset(p, 4, 0, bytes/4, b.stream))
		} else {
			b.setErr(b.ctx.Memset(p, 2, 0, bytes/2, b.stream))
		}
	}
	return t
}

// alloc returns an uninitialised tensor (scratch space). Callers hold b.mu.
func (b *Backend) alloc(op string, dtype engine.DType, shape ...int) *engine.Tensor {
	for _, d := range shape {
		if d < 0 {
			panic(fmt.Sprintf("cuda.%s: negative dimension in shape %v", op, shape))
		}
	}
	if dtype != engine.Float32 && dtype != engine.BFloat16 && dtype != engine.Int32 {
		panic(fmt.Sprintf("cuda.%s: unsupported dtype %v", op, dtype))
	}
	n := engine.Numel(shape)
	bytes := uint64(n) * uint64(dtype.Size())
	s := &storage{b: b, n: n, dtype: dtype, l: &lease{done: true}}
	if b.broken() {
		return engine.NewTensor(s, dtype, 0, shape...)
	}
	l, err := b.pool.get(b, bytes)
	if IsOutOfMemory(err) {
		err = &engine.OutOfMemoryError{Device: b.name, Requested: bytes, Stats: b.pool.stats(), Err: err}
	}
	if err != nil {
		b.setErr(fmt.Errorf("cuda.%s(%v %v, %d bytes): %w", op, dtype, shape, bytes, err))
		return engine.NewTensor(s, dtype, 0, shape...)
	}
	s.l = l
	// Return the memory to the cache when the storage becomes unreachable,
	// so tensors that are never Freed do not leak device memory.
	pool := &b.pool
	runtime.AddCleanup(s, func(l *lease) { pool.put(l) }, l)
	return engine.NewTensor(s, dtype, 0, shape...)
}

// Free returns t's storage to the allocator's cache.
func (b *Backend) Free(t *engine.Tensor) {
	if t == nil {
		return
	}
	s := b.store("Free", t)
	b.pool.put(s.l)
}

// store returns t's device storage, panicking when t belongs elsewhere.
func (b *Backend) store(op string, t *engine.Tensor) *storage {
	if t == nil {
		panic(fmt.Sprintf("cuda.%s: nil tensor", op))
	}
	s, ok := t.Storage().(*storage)
	if !ok || s.b != b {
		panic(fmt.Sprintf("cuda.%s: tensor %v is not on backend %s (storage %T)", op, t, b.name, t.Storage()))
	}
	return s
}

// ptr returns the device address of t's first element, or 0 for nil t.
// It panics if the storage was freed.
func (b *Backend) ptr(op string, t *engine.Tensor) DevicePtr {
	if t == nil {
		return 0
	}
	s := b.store(op, t)
	if s.l.done {
		if b.err != nil {
			return 0 // allocation failed earlier; the op is skipped anyway
		}
		panic(fmt.Sprintf("cuda.%s: tensor %v was freed (or its allocation failed)", op, t))
	}
	return s.l.blk.ptr + DevicePtr(t.Offset()*t.DType().Size())
}

// ---- host transfers ----

// f32ToBF16 rounds to nearest even (NaN stays NaN).
func f32ToBF16(f float32) uint16 {
	u := math.Float32bits(f)
	if u&0x7fffffff > 0x7f800000 {
		return uint16(u>>16) | 0x40
	}
	return uint16((u + 0x7fff + (u>>16)&1) >> 16)
}

func bf16ToF32(h uint16) float32 { return math.Float32frombits(uint32(h) << 16) }

// uploadRaw copies host bytes to t's elements synchronously.
func (b *Backend) uploadRaw(op string, t *engine.Tensor, p unsafe.Pointer, bytes int) {
	b.setErr(b.ctx.CopyHtoD(b.ptr(op, t), p, uint64(bytes)))
}

// Upload copies host values into a Float32 or BFloat16 tensor (rounding to
// nearest even for BFloat16). It returns once src has been read.
func (b *Backend) Upload(dst *engine.Tensor, src []float32) {
	if len(src) != dst.Len() {
		panic(fmt.Sprintf("cuda.Upload: %d values for tensor %v of %d elements", len(src), dst, dst.Len()))
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	b.count("Upload", true)
	if b.broken() || len(src) == 0 {
		return
	}
	switch dst.DType() {
	case engine.Float32:
		b.uploadRaw("Upload", dst, unsafe.Pointer(&src[0]), 4*len(src))
	case engine.BFloat16:
		h := make([]uint16, len(src))
		for i, v := range src {
			h[i] = f32ToBF16(v)
		}
		b.uploadRaw("Upload", dst, unsafe.Pointer(&h[0]), 2*len(h))
	default:
		panic(fmt.Sprintf("cuda.Upload: tensor %v is not F32 or BF16 (use UploadInt32)", dst))
	}
}

// UploadInt32 copies host values into an Int32 tensor.
func (b *Backend) UploadInt32(dst *engine.Tensor, src []int32) {
	if len(src) != dst.Len() {
		panic(fmt.Sprintf("cuda.UploadInt32: %d values for tensor %v of %d elements", len(src), dst, dst.Len()))
	}
	if dst.DType() != engine.Int32 {
		panic(fmt.Sprintf("cuda.UploadInt32: tensor %v is not I32", dst))
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	b.count("UploadInt32", true)
	if b.broken() || len(src) == 0 {
		return
	}
	b.uploadRaw("UploadInt32", dst, unsafe.Pointer(&src[0]), 4*len(src))
}

// downloadRaw waits for the stream and copies t's bytes into p.
func (b *Backend) downloadRaw(op string, t *engine.Tensor, p unsafe.Pointer, bytes int) bool {
	if err := b.stream.Synchronize(); err != nil {
		b.setErr(err)
		return false
	}
	err := b.ctx.CopyDtoH(p, b.ptr(op, t), uint64(bytes))
	b.setErr(err)
	return err == nil
}

// Download waits for pending work and returns src's values as float32.
// After a driver error it returns NaNs (Synchronize reports the error).
func (b *Backend) Download(src *engine.Tensor) []float32 {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.count("Download", true)
	out := make([]float32, src.Len())
	b.store("Download", src)
	ok := !b.broken()
	if ok && len(out) > 0 {
		switch src.DType() {
		case engine.Float32:
			ok = b.downloadRaw("Download", src, unsafe.Pointer(&out[0]), 4*len(out))
		case engine.BFloat16:
			h := make([]uint16, len(out))
			if ok = b.downloadRaw("Download", src, unsafe.Pointer(&h[0]), 2*len(h)); ok {
				for i, v := range h {
					out[i] = bf16ToF32(v)
				}
			}
		default:
			panic(fmt.Sprintf("cuda.Download: tensor %v is not F32 or BF16 (use DownloadInt32)", src))
		}
	}
	if !ok {
		nan := float32(math.NaN())
		for i := range out {
			out[i] = nan
		}
	}
	return out
}

// DownloadInt32 waits for pending work and returns an Int32 tensor's values
// (zeros after a driver error; Synchronize reports it).
func (b *Backend) DownloadInt32(src *engine.Tensor) []int32 {
	if src.DType() != engine.Int32 {
		panic(fmt.Sprintf("cuda.DownloadInt32: tensor %v is not I32", src))
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	b.count("DownloadInt32", true)
	out := make([]int32, src.Len())
	b.store("DownloadInt32", src)
	if !b.broken() && len(out) > 0 {
		b.downloadRaw("DownloadInt32", src, unsafe.Pointer(&out[0]), 4*len(out))
	}
	return out
}

// DevicePointer returns the device address of t's first element, for
// interoperation with other CUDA libraries (the benchmarks hand tensors to
// cuBLAS). The address is valid until t is freed; work on it must be
// ordered with the backend's Stream.
func (b *Backend) DevicePointer(t *engine.Tensor) DevicePtr {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.ptr("DevicePointer", t)
}
