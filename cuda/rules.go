package cuda

// Launch rules: the grid, block and dynamic shared memory each kernel
// family expects (kernels/README.md "Launch rules" and the comments atop
// kernels/*.cu are the specification; this file is the Go side of it).

const (
	// ewThreads is the block size of EW, EW2D and ROW kernels: a multiple
	// of 32 (the block reductions need whole warps).
	ewThreads = 256
	// ewBlocksPerSM caps grid-stride launches: enough blocks in flight to
	// fill every SM several times over, without launching one block per
	// 256 elements of a huge tensor.
	ewBlocksPerSM = 16
)

// kernelDynamicShared returns the most dynamic shared memory kernel id is
// launched with (its attribute is raised to that when above 48 KB).
func kernelDynamicShared(id kernelID) int {
	switch kernelSpecs[id].rule {
	case ruleGemmF32:
		return gemmF32Smem
	case ruleGemmBF16:
		return gemmBF16Smem
	case ruleAttnFwd, ruleAttnDq, ruleAttnDkv:
		return attnSmem(id)
	}
	return 0
}

// ewGrid returns the grid size of a grid-stride launch over n items.
func (b *Backend) ewGrid(n int) uint32 {
	blocks := (n + ewThreads - 1) / ewThreads
	limit := ewBlocksPerSM * max(1, b.ctx.Info().SMs)
	return uint32(max(1, min(blocks, limit)))
}

// launchEW launches a grid-stride elementwise kernel over n items.
func (b *Backend) launchEW(op string, id kernelID, n int, args ...any) {
	b.launch(op, id, Dim3{b.ewGrid(n), 1, 1}, Dim3{ewThreads, 1, 1}, 0, args...)
}

// launchEW2D launches a grid-stride kernel over a rows×cols block.
func (b *Backend) launchEW2D(op string, id kernelID, rows, cols int, args ...any) {
	b.launchEW(op, id, rows*cols, args...)
}

// launchRow launches one 256-thread block per row.
func (b *Backend) launchRow(op string, id kernelID, rows, cols int, args ...any) {
	b.launch(op, id, Dim3{uint32(rows), 1, 1}, Dim3{ewThreads, 1, 1}, 0, args...)
}

// launchCols32 launches one 256-thread block (8 warps) per 32 columns.
func (b *Backend) launchCols32(op string, id kernelID, rows, cols int, args ...any) {
	b.launch(op, id, Dim3{uint32((cols + 31) / 32), 1, 1}, Dim3{256, 1, 1}, 0, args...)
}
