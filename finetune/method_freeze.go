package finetune

import (
	"github.com/gotune/gotune/engine/model"
	"github.com/gotune/gotune/engine/train"
	"github.com/gotune/gotune/methods/freeze"
)

// freezeMethod trains chosen layers and modules of the model's own
// weights.
func freezeMethod() *Method { return &Method{Name: "freeze", Apply: applyFreeze} }

// applyFreeze marks what trains; the result is saved as full weights.
func applyFreeze(m model.Model, o *MethodOptions) (train.Saver, error) {
	if o.InitAdapter != "" {
		return nil, optionErrorf("InitAdapter", "%s applies to adapter methods (lora, ...), not to %s freeze, which trains the base weights", o.name("InitAdapter"), o.name("Method"))
	}
	_, err := freeze.Apply(m, freeze.Config{
		TrainableLayers: o.Freeze.TrainableLayers,
		Modules:         o.Freeze.Modules,
		Extra:           o.Freeze.Extra,
	})
	return nil, FieldOptionError(err, optionsOf("Freeze", nil), o.Names)
}
