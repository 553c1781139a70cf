package freeze

import (
	"encoding/json"
	"slices"
	"testing"

	"github.com/gotune/gotune/engine/model"
	"github.com/gotune/gotune/engine/train"
	"github.com/gotune/gotune/internal/golden"
	"github.com/gotune/gotune/methods/internal/methodtest"
)

// methodConfig is a freeze run's method_config in meta.json.
type methodConfig struct {
	Layers  int    `json:"freeze_trainable_layers"`
	Modules string `json:"freeze_trainable_modules"`
	Extra   string `json:"freeze_extra_modules"`
}

// TestGolden applies each golden freeze run's options and checks which
// tensors train and that frozen ones get no gradient buffer, then runs
// methodtest.Check: logits, loss and the first step's gradients, the
// 3-step trajectory, the trained weights and that every frozen weight is
// unchanged.
func TestGolden(t *testing.T) {
	for _, s := range methodtest.Sets(t, methodtest.Root, "freeze") {
		t.Run(s.Meta.Name, func(t *testing.T) {
			methodtest.Check(t, s, func(m model.Model, s *golden.MethodSet) (train.Saver, error) {
				var mc methodConfig
				if err := json.Unmarshal(s.Meta.Run.MethodConfig, &mc); err != nil {
					return nil, err
				}
				names, err := Apply(m, Config{TrainableLayers: mc.Layers, Modules: ParseList(mc.Modules), Extra: ParseList(mc.Extra)})
				if err != nil {
					return nil, err
				}
				var want []string
				for _, p := range s.Meta.Run.Trainable {
					want = append(want, p.Name)
				}
				slices.Sort(want)
				slices.Sort(names)
				if !slices.Equal(names, want) {
					t.Fatalf("trainable %v, reference %v", names, want)
				}
				for _, p := range m.Params() {
					if !p.Trainable && p.G != nil {
						t.Errorf("frozen %s has a gradient buffer", p.Name)
					}
				}
				return nil, nil // the trainer saves the full model
			}, nil)
		})
	}
}
