package cuda

import (
	"fmt"
)

// kernelID indexes kernelSpecs; the order follows kernels/kernels.def.
type kernelID int

const (
	kFill kernelID = iota
	kCopyBlock
	kAdd
	kMul
	kAxpy
	kScale
	kMulCols
	kAddBias
	kActivation
	kActivationBackward
	kSwiglu
	kSwigluBackward
	kAdamw
	kRope
	kEmbedding
	kEmbeddingBackward
	kSumSquares
	kSumRows
	kRowSumSquares
	kRmsnorm
	kRmsnormBackward
	kLayernorm
	kLayernormBackward
	kCrossEntropy
	kGemmF32
	kGemmBf16
	kAttnFwd32
	kAttnFwd64
	kAttnFwd128
	kAttnFwd256
	kAttnDelta
	kAttnDq32
	kAttnDq64
	kAttnDq128
	kAttnDq256
	kAttnDkv32
	kAttnDkv64
	kAttnDkv128
	kAttnDkv256
	numKernels
)

// launchRule names a launch configuration of kernels/README.md.
type launchRule string

const (
	ruleEW       launchRule = "EW"
	ruleEW2D     launchRule = "EW2D"
	ruleCols32   launchRule = "COLS32"
	ruleRow      launchRule = "ROW"
	ruleGemmF32  launchRule = "GEMM_F32"
	ruleGemmBF16 launchRule = "GEMM_BF16"
	ruleAttnFwd  launchRule = "ATTN_FWD"
	ruleAttnDq   launchRule = "ATTN_DQ"
	ruleAttnDkv  launchRule = "ATTN_DKV"
	ruleWarpRows launchRule = "WARP_ROWS"
)

// kernelSpec is one kernels.def entry: the extern "C" name, the launch
// rule, and the parameter kinds in order (p = device pointer, i = int,
// f = float). TestKernelSpecsMatchDef keeps this table equal to the file.
type kernelSpec struct {
	name   string
	rule   launchRule
	params string
}

var kernelSpecs = [numKernels]kernelSpec{
	kFill:               {"gt_fill", ruleEW, "piif"},
	kCopyBlock:          {"gt_copy_block", ruleEW2D, "piipiiiii"},
	kAdd:                {"gt_add", ruleEW, "pipipii"},
	kMul:                {"gt_mul", ruleEW, "pipipii"},
	kAxpy:               {"gt_axpy", ruleEW, "pipiif"},
	kScale:              {"gt_scale", ruleEW, "piif"},
	kMulCols:            {"gt_mul_cols", ruleEW, "pipipiii"},
	kAddBias:            {"gt_add_bias", ruleEW, "pipiii"},
	kActivation:         {"gt_activation", ruleEW, "pipiii"},
	kActivationBackward: {"gt_activation_backward", ruleEW, "pipipiii"},
	kSwiglu:             {"gt_swiglu", ruleEW, "pipipii"},
	kSwigluBackward:     {"gt_swiglu_backward", ruleEW, "pipipipipii"},
	kAdamw:              {"gt_adamw", ruleEW, "pipipipiifffffff"},
	kRope:               {"gt_rope", ruleEW, "pippiiiiiiii"},
	kEmbedding:          {"gt_embedding", ruleEW, "pipipiii"},
	kEmbeddingBackward:  {"gt_embedding_backward", ruleEW, "pipipiii"},
	kSumSquares:         {"gt_sum_squares", ruleEW, "ppii"},
	kSumRows:            {"gt_sum_rows", ruleCols32, "pipiii"},
	kRowSumSquares:      {"gt_row_sum_squares", ruleRow, "pipiii"},
	kRmsnorm:            {"gt_rmsnorm", ruleRow, "pippipiiif"},
	kRmsnormBackward:    {"gt_rmsnorm_backward", ruleRow, "pipipipipipii"},
	kLayernorm:          {"gt_layernorm", ruleRow, "pipppipipiiif"},
	kLayernormBackward:  {"gt_layernorm_backward", ruleRow, "pipipipipipippii"},
	kCrossEntropy:       {"gt_cross_entropy", ruleRow, "ppipipiif"},
	kGemmF32:            {"gt_gemm_f32", ruleGemmF32, "piipiipiipipiiipipipiiiiiffi"},
	kGemmBf16:           {"gt_gemm_bf16", ruleGemmBF16, "piipiipiipipiiipipipiiiiiffi"},
	kAttnFwd32:          {"gt_attn_fwd_32", ruleAttnFwd, "pipipipipiiiiiif"},
	kAttnFwd64:          {"gt_attn_fwd_64", ruleAttnFwd, "pipipipipiiiiiif"},
	kAttnFwd128:         {"gt_attn_fwd_128", ruleAttnFwd, "pipipipipiiiiiif"},
	kAttnFwd256:         {"gt_attn_fwd_256", ruleAttnFwd, "pipipipipiiiiiif"},
	kAttnDelta:          {"gt_attn_delta", ruleWarpRows, "ppipiiiii"},
	kAttnDq32:           {"gt_attn_bwd_dq_32", ruleAttnDq, "pipipipipipipiiiiif"},
	kAttnDq64:           {"gt_attn_bwd_dq_64", ruleAttnDq, "pipipipipipipiiiiif"},
	kAttnDq128:          {"gt_attn_bwd_dq_128", ruleAttnDq, "pipipipipipipiiiiif"},
	kAttnDq256:          {"gt_attn_bwd_dq_256", ruleAttnDq, "pipipipipipipiiiiif"},
	kAttnDkv32:          {"gt_attn_bwd_dkv_32", ruleAttnDkv, "pipipipipipipipiiiiif"},
	kAttnDkv64:          {"gt_attn_bwd_dkv_64", ruleAttnDkv, "pipipipipipipipiiiiif"},
	kAttnDkv128:         {"gt_attn_bwd_dkv_128", ruleAttnDkv, "pipipipipipipipiiiiif"},
	kAttnDkv256:         {"gt_attn_bwd_dkv_256", ruleAttnDkv, "pipipipipipipipiiiiif"},
}

// loadFunctions looks up every kernel and raises the dynamic shared memory
// limit of those whose rule needs more than the default 48 KB.
func (b *Backend) loadFunctions() error {
	b.fns = make([]*Function, numKernels)
	b.attrs = make([]FuncAttributes, numKernels)
	for id := kernelID(0); id < numKernels; id++ {
		spec := kernelSpecs[id]
		f, err := b.mod.Function(spec.name)
		if err != nil {
			return fmt.Errorf("cuda: kernel %s missing from the loaded image (stale fatbin or emulator?): %w", spec.name, err)
		}
		if smem := kernelDynamicShared(id); smem > 48<<10 {
			if err := f.SetMaxDynamicShared(smem); err != nil {
				return err
			}
		}
		a, err := f.Attributes()
		if err != nil {
			return err
		}
		b.fns[id], b.attrs[id] = f, a
	}
	return nil
}

// KernelInfo describes one loaded kernel's compiled resources.
type KernelInfo struct {
	Name string
	FuncAttributes
}

// Kernels lists the loaded kernels with their attributes (registers,
// spills, shared memory), for `gotune bench kernels` and diagnostics.
func (b *Backend) Kernels() []KernelInfo {
	out := make([]KernelInfo, 0, numKernels)
	for id := kernelID(0); id < numKernels; id++ {
		out = append(out, KernelInfo{Name: kernelSpecs[id].name, FuncAttributes: b.attrs[id]})
	}
	return out
}

// launch queues kernel id after checking the arguments against its
// kernels.def parameter list, so a mismatch is a clear panic here rather
// than a corrupted launch. Callers hold b.mu; a driver error is recorded.
func (b *Backend) launch(op string, id kernelID, grid, block Dim3, shmem int, args ...any) {
	spec := kernelSpecs[id]
	if len(args) != len(spec.params) {
		panic(fmt.Sprintf("cuda.%s: internal error: %s takes %d parameters, got %d", op, spec.name, len(spec.params), len(args)))
	}
	for i, a := range args {
		ok := false
		switch a.(type) {
		case DevicePtr:
			ok = spec.params[i] == 'p'
		case int, int32:
			ok = spec.params[i] == 'i'
		case float32:
			ok = spec.params[i] == 'f'
		}
		if !ok {
			panic(fmt.Sprintf("cuda.%s: internal error: %s parameter %d is %T, want kind %q", op, spec.name, i, a, spec.params[i]))
		}
	}
	if err := b.fns[id].Launch(grid, block, shmem, b.stream, args...); err != nil {
		b.setErr(fmt.Errorf("cuda.%s: %w", op, err))
	}
}
