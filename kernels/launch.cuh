// launch.cuh: the launch constants of every kernel family (threads per
// block, tile shapes, shared-memory bytes) — their one source. The kernels
// read them through common.cuh, the emulator self-test includes this file,
// and the Go side reads them from cuda/kernels_gen.go, which
// `go generate ./cuda` writes from this file and kernels.def (a test fails
// when that file is stale). Change a tile size here and the kernels, the
// launches and the tests change together.
//
// The syntax is restricted so the Go generator can translate it exactly:
//   #define GT_NAME expr          -> a Go constant
//   #define GT_NAME(A, B) expr    -> a Go func(A, B int) int
// where expr uses only integer literals, GT_ names defined above, the
// macro's own parameters, + - * / % and parentheses (integer arithmetic
// on non-negative values, which C and Go evaluate alike). The `//` lines
// directly above a define become its Go doc comment.
#ifndef GOTUNE_KERNELS_LAUNCH_CUH
#define GOTUNE_KERNELS_LAUNCH_CUH

// ---- grid-stride and per-row rules (EW, EW2D, ROW, COLS32, WARP_ROWS) ----

// GT_EW_THREADS is the block size of the EW, EW2D, ROW, COLS32 and
// WARP_ROWS rules: a multiple of 32, since the block reductions need whole
// warps.
#define GT_EW_THREADS 256
// GT_MAX_GRID_X is the largest grid.x a grid-stride launch uses (the
// kernels loop, so any grid size is correct; the hardware allows more).
#define GT_MAX_GRID_X 65535
// GT_MAX_GRID_YZ is the hardware's limit on grid.y and grid.z.
#define GT_MAX_GRID_YZ 65535
// GT_COLS_PER_BLOCK is how many columns one COLS32 block owns (one per lane).
#define GT_COLS_PER_BLOCK 32
// GT_WARP_ROWS_PER_BLOCK is how many rows (one per warp) a WARP_ROWS block
// handles per grid-stride step.
#define GT_WARP_ROWS_PER_BLOCK (GT_EW_THREADS / 32)

// ---- fused GEMM (GEMM_F32, GEMM_BF16) ----

// GT_GEMM_THREADS is the block size of both GEMM kernels.
#define GT_GEMM_THREADS 256
// GT_GEMM_F32_TILE is the square output tile (rows and columns) of one
// gt_gemm_f32 block.
#define GT_GEMM_F32_TILE 64
// GT_GEMM_F32_K is gt_gemm_f32's k-step.
#define GT_GEMM_F32_K 16
// GT_GEMM_BF16_TILE is the square output tile of one gt_gemm_bf16 block
// (8 warps as 2 x 4, each 64 x 32 of m16n8k16 fragments).
#define GT_GEMM_BF16_TILE 128
// GT_GEMM_BF16_K is gt_gemm_bf16's k-step.
#define GT_GEMM_BF16_K 32
// GT_GEMM_BF16_STAGES is the depth of gt_gemm_bf16's cp.async pipeline.
#define GT_GEMM_BF16_STAGES 3
// GT_GEMM_BF16_PAD pads shared-memory tile rows (bf16 elements, 16 bytes)
// so the 8 row addresses of every ldmatrix hit distinct bank groups.
#define GT_GEMM_BF16_PAD 8
// GT_GEMM_BF16_SLOT is the bf16 elements of one operand's tile in one
// stage: 128 k-contiguous rows of K + PAD (a k-major 32 x (128 + PAD) tile
// fits in the same slot).
#define GT_GEMM_BF16_SLOT (GT_GEMM_BF16_TILE * (GT_GEMM_BF16_K + GT_GEMM_BF16_PAD))
// GT_GEMM_BF16_SMEM is gt_gemm_bf16's dynamic shared memory in bytes:
// stages x 2 operands x slot x 2 bytes (61440, above the default 48 KB, so
// the backend raises the kernel's attribute).
#define GT_GEMM_BF16_SMEM (GT_GEMM_BF16_STAGES * 2 * GT_GEMM_BF16_SLOT * 2)
// GT_SPLITK_MIN_KTILES is the fewest k-tiles a split-k slice gets: below
// that, the atomic adds cost more than the parallelism gains.
#define GT_SPLITK_MIN_KTILES 8
// GT_SPLITK_MAX is the most k-slices (grid.z) of a split-k launch.
#define GT_SPLITK_MAX 64

// ---- SIMT flash attention (ATTN_FWD, ATTN_DQ, ATTN_DKV; attention.cu) ----

// GT_ATTN_THREADS is the block size of the attention kernels (4 warps).
#define GT_ATTN_THREADS 128
// GT_ATTN_WARPS is the warps of one attention block.
#define GT_ATTN_WARPS (GT_ATTN_THREADS / 32)
// GT_ATTN_TILE is the keys (forward, dq) or queries (dk/dv) one streamed
// shared-memory tile holds: one per lane.
#define GT_ATTN_TILE 32
// GT_ATTN_PAD pads lane-per-row tiles (floats) so the 8 lanes of each
// quarter-warp's 16-byte loads hit distinct banks.
#define GT_ATTN_PAD 4
// GT_ATTN_ROWS_PER_WARP is the query (or key) rows one warp owns: 8, and 4
// for DMAX 256 whose per-row registers would otherwise spill. (Valid for
// the instantiated DMAX 32, 64, 128, 256.)
#define GT_ATTN_ROWS_PER_WARP(DMAX) (8 / (1 + (DMAX) / 256))
// GT_ATTN_ROWS_PER_BLOCK is BR, the rows of one attention block.
#define GT_ATTN_ROWS_PER_BLOCK(DMAX) (GT_ATTN_WARPS * GT_ATTN_ROWS_PER_WARP(DMAX))
// GT_ATTN_FWD_SMEM is gt_attn_fwd_DMAX's dynamic shared memory in bytes:
// the block's queries [BR][DMAX], K and V tiles [TILE][DMAX+PAD] and the
// warps' probabilities [BR][TILE], all float32.
#define GT_ATTN_FWD_SMEM(DMAX) (4 * (GT_ATTN_ROWS_PER_BLOCK(DMAX) * (DMAX) + 2 * GT_ATTN_TILE * ((DMAX) + GT_ATTN_PAD) + GT_ATTN_ROWS_PER_BLOCK(DMAX) * GT_ATTN_TILE))
// GT_ATTN_DQ_SMEM is gt_attn_bwd_dq_DMAX's: queries and dout [BR][DMAX]
// each, K and V tiles, and dS [BR][TILE].
#define GT_ATTN_DQ_SMEM(DMAX) (4 * (2 * GT_ATTN_ROWS_PER_BLOCK(DMAX) * (DMAX) + 2 * GT_ATTN_TILE * ((DMAX) + GT_ATTN_PAD) + GT_ATTN_ROWS_PER_BLOCK(DMAX) * GT_ATTN_TILE))
// GT_ATTN_DKV_SMEM is gt_attn_bwd_dkv_DMAX's: keys and values [BR][DMAX]
// each, query and dout tiles, and P and dS [BR][TILE].
#define GT_ATTN_DKV_SMEM(DMAX) (4 * (2 * GT_ATTN_ROWS_PER_BLOCK(DMAX) * (DMAX) + 2 * GT_ATTN_TILE * ((DMAX) + GT_ATTN_PAD) + 2 * GT_ATTN_ROWS_PER_BLOCK(DMAX) * GT_ATTN_TILE))

// ---- attention on tensor cores (ATTN_TC_FWD, ATTN_TC_DQ, ATTN_TC_DKV; attention_tc.cu) ----
// Block size GT_ATTN_THREADS (4 warps); N is the head-dimension bound of the
// instantiation (64 or 128).

// GT_ATTN_TC_ROWS is the query rows (forward, dq) or keys (dk/dv) one
// tensor-core attention block owns: 4 warps of one 16-row mma fragment.
#define GT_ATTN_TC_ROWS 64
// GT_ATTN_TC_PAD pads every bf16 shared-memory tile row (elements, 16
// bytes) so the 8 row addresses of an ldmatrix hit distinct bank groups.
#define GT_ATTN_TC_PAD 8
// GT_ATTN_TC_FWD_TILE is the keys of one streamed forward K/V tile.
#define GT_ATTN_TC_FWD_TILE 64
// GT_ATTN_TC_BWD_TILE is the keys (dq) or queries (dk/dv) of one streamed
// backward tile: 64 for N = 64, 32 for N = 128, where two 16 x N float32
// accumulator sets already take 128 registers per thread. (Valid for the
// instantiated N = 64, 128.)
#define GT_ATTN_TC_BWD_TILE(N) (64 / (1 + (N) / 128))
// GT_ATTN_TC_FWD_SMEM is gt_attn_fwd_tc_N's dynamic shared memory in
// bytes: Q [ROWS][N+PAD] and two stages of K and V [FWD_TILE][N+PAD], bf16.
#define GT_ATTN_TC_FWD_SMEM(N) (2 * (GT_ATTN_TC_ROWS + 4 * GT_ATTN_TC_FWD_TILE) * ((N) + GT_ATTN_TC_PAD))
// GT_ATTN_TC_DQ_SMEM is gt_attn_bwd_dq_tc_N's: Q and dout [ROWS][N+PAD]
// and two stages of K and V [BWD_TILE][N+PAD], bf16.
#define GT_ATTN_TC_DQ_SMEM(N) (2 * (2 * GT_ATTN_TC_ROWS + 4 * GT_ATTN_TC_BWD_TILE(N)) * ((N) + GT_ATTN_TC_PAD))
// GT_ATTN_TC_DKV_SMEM is gt_attn_bwd_dkv_tc_N's: K and V [ROWS][N+PAD],
// two stages of Q and dout [BWD_TILE][N+PAD] (bf16), and two stages of the
// tile's lse and delta (float32).
#define GT_ATTN_TC_DKV_SMEM(N) (GT_ATTN_TC_DQ_SMEM(N) + 2 * 2 * 4 * GT_ATTN_TC_BWD_TILE(N))

#endif  // GOTUNE_KERNELS_LAUNCH_CUH
