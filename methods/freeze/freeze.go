// Package freeze implements partial fine-tuning ("freeze" tuning, as in
// LLaMA-Factory): only some transformer layers — all of their parameters
// or chosen sub-modules — and optionally some modules outside the layers
// train; everything else is frozen.
//
// Frozen parameters have no gradient buffer and no optimizer state, and
// the model's backward pass stops at the lowest trainable parameter: no
// gradient is computed, and no activation kept, below it. Training the
// last layers of a deep model therefore costs little more than a forward
// pass. The result is saved as full weights, like full fine-tuning.
package freeze

import (
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/gotune/gotune/engine"
	"github.com/gotune/gotune/engine/fielderr"
	"github.com/gotune/gotune/engine/model"
)

// All is the Modules value that trains every parameter of the chosen layers.
const All = "all"

// Config says what trains.
type Config struct {
	// TrainableLayers is the number of layers that train: the last N when
	// positive, the first |N| when negative, none when zero.
	TrainableLayers int
	// Modules names the parts of each chosen layer that train: "all", or
	// module paths within a layer ("mlp", "self_attn", "self_attn.q_proj",
	// "input_layernorm"; GPT-2: "attn", "mlp", "ln_1", "ln_2"). A name
	// selects the module with that path and everything under it.
	Modules []string
	// Extra names modules outside the layers that train, by the last
	// component of their path: "embed_tokens", "norm" (the final norm),
	// "lm_head"; GPT-2: "wte", "wpe", "ln_f".
	Extra []string
}

// ParseList splits a comma-separated list, dropping blanks.
func ParseList(s string) []string {
	var out []string
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}

// owner is where a base parameter lives: its layer (or -1) and its module
// path relative to the layer (or the module's last path component outside
// the layers).
type owner struct {
	layer int
	path  string
}

// Apply marks the parameters cfg selects trainable and every other
// parameter of m frozen (releasing its gradient buffer). It returns the
// names of the trainable parameters. A wrong field of cfg is a
// *fielderr.Error; names that select nothing are errors listing what
// exists.
func Apply(m model.Model, cfg Config) ([]string, error) {
	L := m.NumLayers()
	n := cfg.TrainableLayers
	if n > L || -n > L {
		return nil, fielderr.Errorf("TrainableLayers", "is %d, but the model has %d layers", n, L)
	}
	lo, hi := L-n, L // last n
	if n < 0 {
		lo, hi = 0, -n
	}
	if len(cfg.Modules) == 0 {
		return nil, fielderr.Errorf("Modules", "names no module (use %q for whole layers)", All)
	}
	all := false
	for _, mod := range cfg.Modules {
		if mod == All {
			all = true
		}
	}
	if all && len(cfg.Modules) > 1 {
		return nil, fielderr.Errorf("Modules", "%q cannot be combined with other names", All)
	}

	owners := ownersOf(m)
	layerMods := map[string]bool{} // every module path within a layer, for errors
	extraMods := map[string]bool{}
	for _, o := range owners {
		if o.layer >= 0 {
			layerMods[o.path] = true
		} else {
			extraMods[o.path] = true
		}
	}
	usedMod := map[string]bool{}
	usedExtra := map[string]bool{}
	selected := map[*engine.Param]bool{}
	for p, o := range owners {
		switch {
		case o.layer >= 0 && o.layer >= lo && o.layer < hi:
			for _, mod := range cfg.Modules {
				if mod == All || o.path == mod || strings.HasPrefix(o.path, mod+".") {
					selected[p] = true
					usedMod[mod] = true
				}
			}
		case o.layer < 0:
			for _, e := range cfg.Extra {
				if o.path == e {
					selected[p] = true
					usedExtra[e] = true
				}
			}
		}
	}
	if !all {
		for _, mod := range cfg.Modules {
			if !within(layerMods, mod) {
				return nil, fielderr.Errorf("Modules", "%q: no such module in the layers (they have: %s)", mod, strings.Join(topLevel(layerMods), ", "))
			}
		}
	}
	for _, e := range cfg.Extra {
		if !usedExtra[e] {
			if e == "lm_head" && m.Config().TieEmbeddings {
				return nil, fielderr.Errorf("Extra", "lm_head: it is tied to the token embedding in this model; name the embedding (%s) to train it", embedName(extraMods))
			}
			return nil, fielderr.Errorf("Extra", "%q: no such module outside the layers (there are: %s)", e, strings.Join(sortedKeys(extraMods), ", "))
		}
	}
	if len(selected) == 0 {
		return nil, fielderr.Errorf("TrainableLayers", "is %d and %s names no module: nothing to train", n, fielderr.Ref("Extra"))
	}
	var names []string
	for _, p := range m.Params() {
		on := selected[p]
		model.SetTrainable(p, on)
		if on {
			names = append(names, p.Name)
		}
	}
	return names, nil
}

// ownersOf maps every base parameter to its layer and module path. A
// module outside the layers owns only parameters named under its own
// path, so a tied lm_head (which reads the embedding) owns nothing.
func ownersOf(m model.Model) map[*engine.Param]owner {
	out := map[*engine.Param]owner{}
	base := map[*engine.Param]bool{}
	for _, p := range m.BaseParams() {
		base[p] = true
	}
	for _, nm := range m.Modules() {
		for _, p := range nm.Module.Params() {
			if !base[p] || !strings.HasPrefix(p.Name, nm.Name+".") {
				continue
			}
			if nm.Layer < 0 {
				out[p] = owner{layer: -1, path: nm.Name[strings.LastIndexByte(nm.Name, '.')+1:]}
				continue
			}
			// The path within the layer follows ".<layer>." in the name.
			marker := fmt.Sprintf(".%d.", nm.Layer)
			i := strings.Index(nm.Name, marker)
			if i < 0 {
				continue
			}
			out[p] = owner{layer: nm.Layer, path: nm.Name[i+len(marker):]}
		}
	}
	return out
}

// within reports whether mod names a module path or a prefix of one.
func within(paths map[string]bool, mod string) bool {
	for p := range paths {
		if p == mod || strings.HasPrefix(p, mod+".") {
			return true
		}
	}
	return false
}

// topLevel returns the first components of module paths, sorted.
func topLevel(paths map[string]bool) []string {
	set := map[string]bool{}
	for p := range paths {
		set[strings.SplitN(p, ".", 2)[0]] = true
	}
	return sortedKeys(set)
}

func embedName(extra map[string]bool) string {
	for _, n := range []string{"embed_tokens", "wte"} {
		if extra[n] {
			return n
		}
	}
	return "the token embedding"
}

// sortedKeys returns a set's members in order, for stable error messages.
func sortedKeys(m map[string]bool) []string { return slices.Sorted(maps.Keys(m)) }
