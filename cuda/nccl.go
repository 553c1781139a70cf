package cuda

import (
	"fmt"
	"os"
	"sync"

	"github.com/gotune/gotune/engine"
	"github.com/gotune/gotune/engine/dist"
)

// NCCL subset.
//
// gotune resolves these NCCL entry points with dlsym from libnccl.so.2 (or
// $GOTUNE_LIBNCCL) at run time, as it does the driver: nothing from NCCL
// is needed to build it. kernels/emu/nccl.cpp implements the same symbols
// between processes on one machine (make emu -> libnccl.so.2 beside the
// emulated libcuda.so). Types, declared by gotune itself:
//
//	typedef int ncclResult_t;        // 0 success, 1 unhandled CUDA error, 2 system error,
//	                                 // 3 internal error, 4 invalid argument, 5 invalid usage,
//	                                 // 6 remote error, 7 in progress
//	typedef int ncclDataType_t;      // 2 int32, 7 float32, 8 float64, 9 bfloat16 (and others)
//	typedef int ncclRedOp_t;         // 0 sum, 1 prod, 2 max, 3 min, 4 avg
//	typedef struct ncclComm *ncclComm_t;
//	typedef struct { char internal[128]; } ncclUniqueId;
//	typedef struct CUstream_st *cudaStream_t;   // the same handle as a CUstream
//
// Symbols:
//
//	ncclResult_t ncclGetUniqueId(ncclUniqueId *id);
//	ncclResult_t ncclCommInitRank(ncclComm_t *comm, int nranks, ncclUniqueId id, int rank);
//	ncclResult_t ncclAllReduce(const void *send, void *recv, size_t count,
//	                           ncclDataType_t t, ncclRedOp_t op, ncclComm_t c, cudaStream_t s);
//	ncclResult_t ncclReduceScatter(const void *send, void *recv, size_t recvcount,
//	                               ncclDataType_t t, ncclRedOp_t op, ncclComm_t c, cudaStream_t s);
//	ncclResult_t ncclAllGather(const void *send, void *recv, size_t sendcount,
//	                           ncclDataType_t t, ncclComm_t c, cudaStream_t s);
//	ncclResult_t ncclBroadcast(const void *send, void *recv, size_t count,
//	                           ncclDataType_t t, int root, ncclComm_t c, cudaStream_t s);
//	ncclResult_t ncclCommDestroy(ncclComm_t c);
//	ncclResult_t ncclCommAbort(ncclComm_t c);
//	ncclResult_t ncclCommGetAsyncError(ncclComm_t c, ncclResult_t *err);
//	const char  *ncclGetErrorString(ncclResult_t r);
//	const char  *ncclGetLastError(ncclComm_t c);    // optional (NCCL >= 2.13)
//
// A blocking collective is queued on the backend's one stream, so it is
// ordered after the kernels that wrote its input and before those that
// read its output, with no events. A started one (dist.Overlapper) runs on
// the communicator's own stream, which waits for an event recorded on the
// backend's stream; Pending.Wait makes the backend's stream wait for its
// completion event, so the backward pass keeps computing meanwhile.

// DefaultNCCLLibrary is the NCCL library opened when $GOTUNE_LIBNCCL is unset.
const DefaultNCCLLibrary = "libnccl.so.2"

// EnvNCCLLibrary names the environment variable that overrides
// DefaultNCCLLibrary (tests point it at the emulator's libnccl.so.2).
const EnvNCCLLibrary = "GOTUNE_LIBNCCL"

const ncclUniqueIDBytes = 128

// ncclResult is an ncclResult_t.
type ncclResult int

// ncclDataType_t and ncclRedOp_t values gotune passes.
const (
	ncclInt32    = 2
	ncclFloat32  = 7
	ncclBfloat16 = 9
	ncclSum      = 0
)

var ncclState struct {
	once sync.Once
	err  error
}

// NCCLLibraryPath returns the NCCL library path that is (or would be) loaded.
func NCCLLibraryPath() string {
	if p := os.Getenv(EnvNCCLLibrary); p != "" {
		return p
	}
	return DefaultNCCLLibrary
}

// LoadNCCL loads the NCCL library once per process (the driver first).
func LoadNCCL() error {
	ncclState.once.Do(func() {
		if err := Init(); err != nil {
			ncclState.err = err
			return
		}
		if err := ncclOpen(NCCLLibraryPath()); err != nil {
			ncclState.err = fmt.Errorf("cuda: cannot load NCCL %q (set %s to its path): %w", NCCLLibraryPath(), EnvNCCLLibrary, err)
		}
	})
	return ncclState.err
}

// NCCLUniqueID identifies one communicator: rank 0 creates it and every
// rank passes the same bytes to NewNCCLComm.
type NCCLUniqueID [ncclUniqueIDBytes]byte

// NewNCCLUniqueID asks NCCL for a fresh communicator id.
func NewNCCLUniqueID() (NCCLUniqueID, error) {
	var id NCCLUniqueID
	if err := LoadNCCL(); err != nil {
		return id, err
	}
	if r := ncclUniqueIDRaw((*[ncclUniqueIDBytes]byte)(&id)); r != 0 {
		return id, fmt.Errorf("ncclGetUniqueId: %s", ncclErrorStringRaw(r))
	}
	return id, nil
}

// NCCLComm is one rank of an NCCL communicator on a Backend's device. It
// implements dist.Comm: collectives on the backend's tensors, queued on
// its stream.
type NCCLComm struct {
	be         *Backend
	rank, size int

	mu      sync.Mutex
	handle  uintptr
	aborted bool

	overlap overlap // collectives started beside the computation
}

var (
	_ dist.Comm       = (*NCCLComm)(nil)
	_ dist.Overlapper = (*NCCLComm)(nil)
)

// NewNCCLComm joins rank of a size-rank communicator; it returns when
// every rank has joined (or NCCL gave up).
func NewNCCLComm(be *Backend, id NCCLUniqueID, rank, size int) (*NCCLComm, error) {
	if err := LoadNCCL(); err != nil {
		return nil, err
	}
	h, r := ncclInitRank(be.ctx.handle, size, (*[ncclUniqueIDBytes]byte)(&id), rank)
	if r != 0 {
		return nil, fmt.Errorf("ncclCommInitRank (rank %d of %d): %s", rank, size, ncclMessage(r, 0))
	}
	return &NCCLComm{be: be, rank: rank, size: size, handle: h}, nil
}

// Rank returns this process's rank.
func (c *NCCLComm) Rank() int { return c.rank }

// Size returns the number of ranks.
func (c *NCCLComm) Size() int { return c.size }

// ncclMessage describes a failed call: NCCL's last error for the
// communicator when it has one, else the code's text.
func ncclMessage(r ncclResult, comm uintptr) string {
	if r&ctxFailFlag != 0 {
		return "cuCtxSetCurrent failed before the NCCL call"
	}
	msg := ncclErrorStringRaw(r)
	if comm != 0 {
		if last := ncclLastErrorRaw(comm); last != "" {
			msg = last
		}
	}
	return fmt.Sprintf("%s (ncclResult_t %d)", msg, int(r))
}

func ncclType(dt engine.DType) (int, error) {
	switch dt {
	case engine.Float32:
		return ncclFloat32, nil
	case engine.BFloat16:
		return ncclBfloat16, nil
	case engine.Int32:
		return ncclInt32, nil
	}
	return 0, fmt.Errorf("nccl: unsupported dtype %v", dt)
}

// call runs one collective on handle, naming op in its error.
func (c *NCCLComm) call(op string, f func(h uintptr) ncclResult) error {
	c.mu.Lock()
	h, aborted := c.handle, c.aborted
	c.mu.Unlock()
	if aborted || h == 0 {
		return fmt.Errorf("%s: the communicator was aborted", op)
	}
	if r := f(h); r != 0 {
		return fmt.Errorf("%s (rank %d of %d): %s", op, c.rank, c.size, ncclMessage(r, h))
	}
	return nil
}

// AllReduceSum replaces t on every rank by the sum of t over ranks.
func (c *NCCLComm) AllReduceSum(t *engine.Tensor) error { return c.allReduce(t, c.be.stream) }

// ReduceScatterSum sums src (Size()×dst.Len() elements) over ranks and
// leaves block Rank() of the sum in dst.
func (c *NCCLComm) ReduceScatterSum(dst, src *engine.Tensor) error {
	return c.reduceScatter(dst, src, c.be.stream)
}

// AllGather concatenates every rank's src into dst (Size()×src.Len()
// elements), in rank order.
func (c *NCCLComm) AllGather(dst, src *engine.Tensor) error {
	if dst.Len() != c.size*src.Len() || src.DType() != dst.DType() {
		return fmt.Errorf("ncclAllGather: dst %v is not %d × src %v", dst, c.size, src)
	}
	dt, err := ncclType(dst.DType())
	if err != nil {
		return err
	}
	s, d := c.be.ptr("AllGather", src), c.be.ptr("AllGather", dst)
	return c.call("ncclAllGather", func(h uintptr) ncclResult {
		return ncclAllGatherRaw(c.be.ctx.handle, s, d, uint64(src.Len()), dt, h, c.be.stream.handle)
	})
}

// Broadcast copies root's t into t on every rank.
func (c *NCCLComm) Broadcast(t *engine.Tensor, root int) error {
	dt, err := ncclType(t.DType())
	if err != nil {
		return err
	}
	p := c.be.ptr("Broadcast", t)
	return c.call("ncclBroadcast", func(h uintptr) ncclResult {
		return ncclBroadcastRaw(c.be.ctx.handle, p, p, uint64(t.Len()), dt, root, h, c.be.stream.handle)
	})
}

// StartAllReduceSum begins AllReduceSum(t) on the communicator's own
// stream (dist.Overlapper).
func (c *NCCLComm) StartAllReduceSum(t *engine.Tensor) (dist.Pending, error) {
	return c.start(func(s *Stream) error { return c.allReduce(t, s) })
}

// StartReduceScatterSum begins ReduceScatterSum(dst, src) on the
// communicator's own stream (dist.Overlapper); dst may be src's block
// Rank() (NCCL's in-place reduce-scatter).
func (c *NCCLComm) StartReduceScatterSum(dst, src *engine.Tensor) (dist.Pending, error) {
	return c.start(func(s *Stream) error { return c.reduceScatter(dst, src, s) })
}

func (c *NCCLComm) allReduce(t *engine.Tensor, s *Stream) error {
	dt, err := ncclType(t.DType())
	if err != nil {
		return err
	}
	p := c.be.ptr("AllReduce", t)
	return c.call("ncclAllReduce", func(h uintptr) ncclResult {
		return ncclAllReduceRaw(c.be.ctx.handle, p, p, uint64(t.Len()), dt, ncclSum, h, s.handle)
	})
}

func (c *NCCLComm) reduceScatter(dst, src *engine.Tensor, s *Stream) error {
	if src.Len() != c.size*dst.Len() || src.DType() != dst.DType() {
		return fmt.Errorf("ncclReduceScatter: src %v is not %d × dst %v", src, c.size, dst)
	}
	dt, err := ncclType(dst.DType())
	if err != nil {
		return err
	}
	sp, dp := c.be.ptr("ReduceScatter", src), c.be.ptr("ReduceScatter", dst)
	return c.call("ncclReduceScatter", func(h uintptr) ncclResult {
		return ncclReduceScatterRaw(c.be.ctx.handle, sp, dp, uint64(dst.Len()), dt, ncclSum, h, s.handle)
	})
}

// start issues a collective on the side stream after the work queued so
// far on the backend's stream, and records its completion.
func (c *NCCLComm) start(issue func(s *Stream) error) (dist.Pending, error) {
	o := &c.overlap
	if o.side == nil {
		side, err := c.be.ctx.NewStream()
		if err != nil {
			return nil, err
		}
		fork, err := c.be.ctx.NewEvent()
		if err != nil {
			side.Destroy()
			return nil, err
		}
		o.side, o.fork = side, fork
	}
	if err := o.fork.Record(c.be.stream); err != nil {
		return nil, err
	}
	if err := o.side.WaitEvent(o.fork); err != nil {
		return nil, err
	}
	if err := issue(o.side); err != nil {
		return nil, err
	}
	var done *Event
	if n := len(o.idle); n > 0 {
		done, o.idle = o.idle[n-1], o.idle[:n-1]
	} else {
		var err error
		if done, err = c.be.ctx.NewEvent(); err != nil {
			return nil, err
		}
	}
	if err := done.Record(o.side); err != nil {
		return nil, err
	}
	return &ncclPending{c: c, done: done}, nil
}

// overlap is what collectives started beside the computation need: the
// side stream they run on, the event that orders it after the backend's
// stream, and idle completion events for reuse.
type overlap struct {
	side *Stream
	fork *Event
	idle []*Event
}

// ncclPending is a collective running on the side stream.
type ncclPending struct {
	c    *NCCLComm
	done *Event
}

// Wait makes the backend's stream wait for the collective. The event can
// be recorded again at once: a stream wait holds on to the record it saw.
func (p *ncclPending) Wait() error {
	if p.done == nil {
		return fmt.Errorf("nccl: a started collective was waited for twice")
	}
	err := p.c.be.stream.WaitEvent(p.done)
	p.c.overlap.idle = append(p.c.overlap.idle, p.done)
	p.done = nil
	return err
}

// closeOverlap waits for the side stream and releases it and its events.
func (c *NCCLComm) closeOverlap() error {
	o := &c.overlap
	if o.side == nil {
		return nil
	}
	err := o.side.Synchronize()
	for _, e := range append(o.idle, o.fork) {
		if derr := e.Destroy(); err == nil {
			err = derr
		}
	}
	if derr := o.side.Destroy(); err == nil {
		err = derr
	}
	*o = overlap{}
	return err
}

// AsyncError reports an error NCCL found in the background (a peer that
// failed), or nil.
func (c *NCCLComm) AsyncError() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.handle == 0 {
		return nil
	}
	e, r := ncclAsyncErrorRaw(c.handle)
	if r != 0 {
		return fmt.Errorf("ncclCommGetAsyncError: %s", ncclMessage(r, c.handle))
	}
	if e != 0 {
		return fmt.Errorf("nccl (rank %d of %d): %s", c.rank, c.size, ncclMessage(e, c.handle))
	}
	return nil
}

// Abort ends the communicator from any goroutine: a collective blocked on
// a peer that is gone returns with an error, and later ones fail at once.
func (c *NCCLComm) Abort() {
	c.mu.Lock()
	h := c.handle
	if h == 0 || c.aborted {
		c.mu.Unlock()
		return
	}
	c.aborted = true
	c.mu.Unlock()
	ncclAbortRaw(c.be.ctx.handle, h)
}

// Close destroys the communicator (after an Abort it only forgets it).
func (c *NCCLComm) Close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	h := c.handle
	c.handle = 0
	if h == 0 || c.aborted {
		return nil // after an abort the side stream may never drain
	}
	err := c.closeOverlap()
	if r := ncclDestroyRaw(c.be.ctx.handle, h); r != 0 {
		return fmt.Errorf("ncclCommDestroy: %s", ncclMessage(r, 0))
	}
	return err
}
