package cuda

import (
	"fmt"
	"os"
	"sync"
)

// EnvCuBLAS names the environment variable that overrides where cuBLAS is
// loaded from (by default libcublas.so.13, .12, .11, then libcublas.so).
const EnvCuBLAS = "GOTUNE_LIBCUBLAS"

// BLAS is a cuBLAS handle bound to one stream. gotune uses cuBLAS only as
// the yardstick of `gotune bench kernels`: it is loaded at run time when
// present and never needed otherwise.
type BLAS struct {
	ctx    *Context
	handle uintptr
	// Path is the library that was loaded.
	Path string
}

// blasStatus turns a cuBLAS status into an error naming the call.
func blasStatus(r int, call string) error {
	if r == 0 {
		return nil
	}
	if r&ctxFailFlag != 0 {
		return check(CUresult(r), call, "")
	}
	return fmt.Errorf("cuda: %s failed: cuBLAS status %d", call, r)
}

var blasLoad struct {
	mu   sync.Mutex
	done bool
	path string
	err  error
}

// OpenBLAS loads cuBLAS (once per process) and creates a handle whose work
// goes on stream s.
func OpenBLAS(ctx *Context, s *Stream) (*BLAS, error) {
	if err := Init(); err != nil {
		return nil, err
	}
	blasLoad.mu.Lock()
	defer blasLoad.mu.Unlock()
	if !blasLoad.done {
		blasLoad.done = true
		candidates := []string{"libcublas.so.13", "libcublas.so.12", "libcublas.so.11", "libcublas.so"}
		if p := os.Getenv(EnvCuBLAS); p != "" {
			candidates = []string{p}
		}
		var errs []string
		for _, p := range candidates {
			if err := blasOpen(p); err != nil {
				errs = append(errs, err.Error())
				continue
			}
			blasLoad.path = p
			errs = nil
			break
		}
		if errs != nil {
			blasLoad.err = fmt.Errorf("cuda: cannot load cuBLAS (set %s): %v", EnvCuBLAS, errs)
		}
	}
	if blasLoad.err != nil {
		return nil, blasLoad.err
	}
	h, r := blasCreate(ctx.handle, s.handle)
	if err := blasStatus(r, "cublasCreate_v2/cublasSetStream_v2"); err != nil {
		return nil, err
	}
	return &BLAS{ctx: ctx, handle: h, Path: blasLoad.path}, nil
}

// Close destroys the handle.
func (b *BLAS) Close() error {
	if b.handle == 0 {
		return nil
	}
	h := b.handle
	b.handle = 0
	return blasStatus(blasDestroy(b.ctx.handle, h), "cublasDestroy_v2")
}

// LinearRowMajor computes the row-major product y[M,N] = x[M,K]·w[N,K]ᵀ
// (a linear layer), all three in dtype (Float32 through cublasSgemm_v2,
// BFloat16 through cublasGemmEx with float32 accumulation). cuBLAS is
// column-major, so this is yᵀ = w·xᵀ there: op(A)=Wᵀᵀ with A=w (lda=K),
// B=x (ldb=K), C=y (ldc=N).
func (b *BLAS) LinearRowMajor(bf16 bool, m, n, k int, x, w, y DevicePtr) error {
	const opN, opT = 0, 1
	if !bf16 {
		return blasStatus(blasSgemm(b.ctx.handle, b.handle, opT, opN, n, m, k, 1, w, k, x, k, 0, y, n), "cublasSgemm_v2")
	}
	const r16bf = 14 // CUDA_R_16BF
	return blasStatus(blasGemmEx(b.ctx.handle, b.handle, opT, opN, n, m, k, 1, w, r16bf, k, x, r16bf, k, 0, y, r16bf, n), "cublasGemmEx")
}
