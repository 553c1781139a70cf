// Package dist is what data-parallel training needs besides the math: the
// Comm interface the trainer reduces gradients through, the rank and
// rendezvous settings that torchrun, Slurm and Open MPI put in the
// environment (FromEnv), and the TCP rendezvous that hands every rank
// the communicator id and then watches the other ranks, so that one that
// dies or fails ends every rank with a message naming it (Rendezvous).
//
// The NCCL implementation of Comm lives with the CUDA backend
// (cuda.NCCLComm); this package is pure Go.
package dist

import "github.com/gotune/gotune/engine"

// Comm is one rank of a group of processes that reduce tensors together.
// Every rank must call the same collectives in the same order with tensors
// of the same sizes; the tensors belong to the rank's backend.
type Comm interface {
	// Rank is this process's rank, 0 ≤ Rank < Size.
	Rank() int
	// Size is the number of ranks.
	Size() int
	// AllReduceSum replaces t on every rank by the sum of t over ranks.
	AllReduceSum(t *engine.Tensor) error
	// ReduceScatterSum sums src (Size()·dst.Len() elements) over ranks and
	// leaves block Rank() of the sum in dst.
	ReduceScatterSum(dst, src *engine.Tensor) error
	// AllGather writes every rank's src into dst (Size()·src.Len()
	// elements), block r from rank r.
	AllGather(dst, src *engine.Tensor) error
	// Broadcast copies root's t into t on every rank.
	Broadcast(t *engine.Tensor, root int) error
	// Abort ends the group from any goroutine: a collective waiting for a
	// peer returns an error, and so does every later one.
	Abort()
	// Close releases the communicator.
	Close() error
}

// Overlapper is implemented by a Comm that can run a collective beside
// the computation: on a GPU, on a communication stream that waits for
// the computation queued before the call and does not delay the
// computation queued after it, so gradients are reduced while the rest
// of the backward pass runs. The collectives of a Comm, started or not,
// form one sequence that every rank must issue in the same order; a
// blocking collective must not be issued while a started one has not
// been waited for (NCCL does not order two streams).
type Overlapper interface {
	// StartAllReduceSum begins AllReduceSum(t). t must not be read or
	// written until the returned Pending's Wait.
	StartAllReduceSum(t *engine.Tensor) (Pending, error)
	// StartReduceScatterSum begins ReduceScatterSum(dst, src); dst may be
	// block Rank() of src (in place). Neither may be used until Wait.
	StartReduceScatterSum(dst, src *engine.Tensor) (Pending, error)
}

// Pending is a collective that an Overlapper started.
type Pending interface {
	// Wait orders the computation queued after it after the collective
	// (on a GPU the host does not wait). Call it exactly once.
	Wait() error
}
