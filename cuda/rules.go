package cuda

// Launch rules: the grid, block and dynamic shared memory of each kernel
// family (kernels/README.md "Launch rules"). The numbers come from
// kernels/launch.cuh through kernels_gen.go; this file turns them into a
// geometry per rule. Each constructor returns its rule's own type, and a
// generated launcher accepts only that type.

// ewBlocksPerSM caps grid-stride launches: enough blocks in flight to fill
// every SM several times over, without launching one block per 256
// elements of a huge tensor. (A host-side policy: the kernels loop, so any
// grid is correct.)
const ewBlocksPerSM = 16

// launchGeom is one launch's grid, block and dynamic shared memory (bytes).
type launchGeom struct {
	grid, block Dim3
	smem        int
}

// kernelDynamicShared returns the most dynamic shared memory kernel id is
// launched with (its attribute is raised to that when above 48 KB).
func kernelDynamicShared(id kernelID) int {
	switch kernelSpecs[id].rule {
	case ruleGemmBf16:
		return gemmBf16Smem
	case ruleAttnFwd, ruleAttnDq, ruleAttnDkv:
		return attnSmem(id)
	case ruleAttnTcFwd, ruleAttnTcDq, ruleAttnTcDkv:
		return attnTcSmem(id)
	}
	return 0
}

// gridStride returns the grid size of a grid-stride launch over n items.
func (b *Backend) gridStride(n, perBlock int) uint32 {
	blocks := (n + perBlock - 1) / perBlock
	limit := min(maxGridX, ewBlocksPerSM*max(1, b.ctx.Info().SMs))
	return uint32(max(1, min(blocks, limit)))
}

// ewGeom is rule EW: a grid-stride launch over n items.
func (b *Backend) ewGeom(n int) geomEw {
	return geomEw{grid: Dim3{b.gridStride(n, ewThreads), 1, 1}, block: Dim3{ewThreads, 1, 1}}
}

// ew2dGeom is rule EW2D: a grid-stride launch over a rows×cols block.
func (b *Backend) ew2dGeom(rows, cols int) geomEw2d {
	return geomEw2d(b.ewGeom(rows * cols))
}

// rowGeom is rule ROW: one block per row.
func rowGeom(rows int) geomRow {
	return geomRow{grid: Dim3{uint32(rows), 1, 1}, block: Dim3{ewThreads, 1, 1}}
}

// cols32Geom is rule COLS32: one block (8 warps) per 32 columns.
func cols32Geom(cols int) geomCols32 {
	return geomCols32{grid: Dim3{uint32((cols + colsPerBlock - 1) / colsPerBlock), 1, 1}, block: Dim3{ewThreads, 1, 1}}
}

// warpRowsGeom is rule WARP_ROWS: one warp per row, grid-stride.
func (b *Backend) warpRowsGeom(rows int) geomWarpRows {
	return geomWarpRows{grid: Dim3{b.gridStride(rows, warpRowsPerBlock), 1, 1}, block: Dim3{ewThreads, 1, 1}}
}

// gemmGrid is the grid of a GEMM with square output tiles of tile.
func gemmGrid(m, n, tile, splits int) Dim3 {
	return Dim3{uint32((n + tile - 1) / tile), uint32((m + tile - 1) / tile), uint32(splits)}
}

// gemmF32Geom is rule GEMM_F32 for an m×n output split into splits k-slices.
func gemmF32Geom(m, n, splits int) geomGemmF32 {
	return geomGemmF32{grid: gemmGrid(m, n, gemmF32Tile, splits), block: Dim3{gemmThreads, 1, 1}}
}

// gemmBf16Geom is rule GEMM_BF16 for an m×n output split into splits k-slices.
func gemmBf16Geom(m, n, splits int) geomGemmBf16 {
	return geomGemmBf16{grid: gemmGrid(m, n, gemmBf16Tile, splits), block: Dim3{gemmThreads, 1, 1}, smem: gemmBf16Smem}
}

// attnGrid is the grid of an attention kernel whose blocks own
// attnRowsPerBlock(dmax) of rows rows, per head and batch.
func attnGrid(dmax, rows, heads, batch int) Dim3 {
	br := attnRowsPerBlock(dmax)
	return Dim3{uint32((rows + br - 1) / br), uint32(heads), uint32(batch)}
}

// attnFwdGeom is rule ATTN_FWD for t queries of hq heads and batch b.
func attnFwdGeom(dmax, t, hq, batch int) geomAttnFwd {
	return geomAttnFwd{grid: attnGrid(dmax, t, hq, batch), block: Dim3{attnThreads, 1, 1}, smem: attnFwdSmem(dmax)}
}

// attnDqGeom is rule ATTN_DQ (same grid as the forward).
func attnDqGeom(dmax, t, hq, batch int) geomAttnDq {
	return geomAttnDq{grid: attnGrid(dmax, t, hq, batch), block: Dim3{attnThreads, 1, 1}, smem: attnDqSmem(dmax)}
}

// attnDkvGeom is rule ATTN_DKV: blocks over the s keys of hkv kv heads.
func attnDkvGeom(dmax, s, hkv, batch int) geomAttnDkv {
	return geomAttnDkv{grid: attnGrid(dmax, s, hkv, batch), block: Dim3{attnThreads, 1, 1}, smem: attnDkvSmem(dmax)}
}

// attnTcGrid is the grid of a tensor-core attention kernel: blocks of
// attnTcRows rows (queries or keys) per head and batch.
func attnTcGrid(rows, heads, batch int) Dim3 {
	return Dim3{uint32((rows + attnTcRows - 1) / attnTcRows), uint32(heads), uint32(batch)}
}

// attnTcFwdGeom is rule ATTN_TC_FWD for t queries of hq heads and batch b.
func attnTcFwdGeom(dmax, t, hq, batch int) geomAttnTcFwd {
	return geomAttnTcFwd{grid: attnTcGrid(t, hq, batch), block: Dim3{attnThreads, 1, 1}, smem: attnTcFwdSmem(dmax)}
}

// attnTcDqGeom is rule ATTN_TC_DQ (same grid as the forward).
func attnTcDqGeom(dmax, t, hq, batch int) geomAttnTcDq {
	return geomAttnTcDq{grid: attnTcGrid(t, hq, batch), block: Dim3{attnThreads, 1, 1}, smem: attnTcDqSmem(dmax)}
}

// attnTcDkvGeom is rule ATTN_TC_DKV: blocks over the s keys of hkv kv heads.
func attnTcDkvGeom(dmax, s, hkv, batch int) geomAttnTcDkv {
	return geomAttnTcDkv{grid: attnTcGrid(s, hkv, batch), block: Dim3{attnThreads, 1, 1}, smem: attnTcDkvSmem(dmax)}
}
