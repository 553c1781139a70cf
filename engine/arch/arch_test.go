package arch

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestDescriptorsConsistent checks every registered family for the
// invariants the model builder and the methods rely on.
func TestDescriptorsConsistent(t *testing.T) {
	require.NotEmpty(t, Supported())
	for _, name := range Supported() {
		f, ok := Lookup(name)
		require.True(t, ok)
		t.Run(name, func(t *testing.T) {
			g, ok := ByModelType(f.ModelType)
			require.True(t, ok)
			assert.Equal(t, f, g, "model_type %q names one family", f.ModelType)
			paths := map[string]bool{}
			roles := map[Role]bool{}
			for _, m := range f.Layer {
				assert.False(t, paths[m.Path], "path %q twice", m.Path)
				assert.False(t, roles[m.Role], "role %d twice", m.Role)
				paths[m.Path], roles[m.Role] = true, true
			}
			for _, r := range []Role{Norm1, Norm2, O, Down} {
				assert.True(t, roles[r], "role %d missing", r)
			}
			assert.True(t, roles[QKV] != (roles[Q] && roles[K] && roles[V]), "either fused or separate q/k/v")
			assert.Equal(t, f.MLP == GatedMLP, roles[Gate] || roles[GateUp], "a gate exactly for a gated MLP")
			assert.False(t, roles[GateUp] && (roles[Gate] || roles[Up]), "either fused or separate gate/up")
			if !roles[GateUp] {
				assert.True(t, roles[Up], "an up projection")
			}
			sandwich := roles[PostAttnNorm] && roles[PostMLPNorm]
			assert.Equal(t, f.Placement == SandwichNorm, sandwich, "output norms exactly with sandwich norms")
			assert.Equal(t, roles[PostAttnNorm], roles[PostMLPNorm], "both output norms or neither")
			assert.Equal(t, f.QKNorm != NoQKNorm, roles[QNorm] && roles[KNorm], "q/k norms exactly with QKNorm")
			assert.Equal(t, f.Positions == Learned, f.PosEmbed != "", "a position table exactly for learned positions")
			for _, target := range f.LoRATargets {
				found := false
				for p := range paths {
					found = found || p == target || strings.HasSuffix(p, "."+target)
				}
				assert.True(t, found, "LoRA target %q is no layer module", target)
			}
			assert.Equal(t, "x.3", (&Family{LayerPrefix: "x."}).LayerPath(3))
			assert.True(t, strings.HasSuffix(f.LayerPrefix, "."))
		})
	}
}
