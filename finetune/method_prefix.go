package finetune

import (
	"fmt"

	"github.com/gotune/gotune/engine/model"
	"github.com/gotune/gotune/engine/train"
	"github.com/gotune/gotune/methods/prefix"
)

// prefixMethod is prefix tuning / P-Tuning v2.
func prefixMethod() *Method {
	return &Method{
		Name:      "prefix",
		PeftTypes: []string{prefix.PeftType},
		Apply:     applyPrefix,
		Load: func(m model.Model, dir string) error {
			_, err := prefix.Load(m, dir, prefix.LoadOptions{Frozen: true})
			return err
		},
	}
}

// prefixOption maps prefix.Config's fields to the options that set them:
// the virtual tokens and encoder width are prompt options it shares.
var prefixOption = optionsOf("Prefix", map[string]string{
	"NumVirtualTokens": "Prompt.NumVirtualTokens", "EncoderHidden": "Prompt.EncoderHidden",
})

func applyPrefix(m model.Model, o *MethodOptions) (train.Saver, error) {
	cfg := prefix.Config{
		NumVirtualTokens: o.Prompt.NumVirtualTokens, Layers: o.Prefix.Layers, Projection: o.Prefix.Projection,
		EncoderHidden: o.Prompt.EncoderHidden, Seed: o.Seed, BaseModel: o.BaseModel,
	}
	if err := cfg.Validate(); err != nil {
		return nil, FieldOptionError(err, prefixOption, o.Names)
	}
	if o.InitAdapter == "" {
		if err := checkLayers(o, "Prefix.Layers", cfg.Layers, m); err != nil {
			return nil, err
		}
		a, err := prefix.Apply(m, cfg)
		if err != nil {
			return nil, FieldOptionError(err, prefixOption, o.Names)
		}
		return a, nil
	}
	if err := o.checkPeftType("prefix", prefix.PeftType); err != nil {
		return nil, err
	}
	file, err := prefix.ReadConfig(o.InitAdapter, m)
	if err != nil {
		return nil, o.initAdapterErr(err)
	}
	var bad []string
	if o.given("Prompt.NumVirtualTokens") && cfg.NumVirtualTokens != file.NumVirtualTokens {
		bad = append(bad, fmt.Sprintf("%s %d (num_virtual_tokens is %d)", o.name("Prompt.NumVirtualTokens"), cfg.NumVirtualTokens, file.NumVirtualTokens))
	}
	if o.given("Prefix.Layers") && fmt.Sprint(cfg.Layers) != fmt.Sprint(file.Layers) {
		bad = append(bad, fmt.Sprintf("%s %s (prefix_layers is %v)", o.name("Prefix.Layers"), joinInts(o.Prefix.Layers), file.Layers))
	}
	if o.given("Prefix.Projection") && cfg.Projection != file.Projection {
		bad = append(bad, fmt.Sprintf("%s=%v (prefix_projection is %v)", o.name("Prefix.Projection"), cfg.Projection, file.Projection))
	}
	if o.given("Prompt.EncoderHidden") && file.Projection && cfg.EncoderHidden != file.EncoderHidden {
		bad = append(bad, fmt.Sprintf("%s %d (encoder_hidden_size is %d)", o.name("Prompt.EncoderHidden"), cfg.EncoderHidden, file.EncoderHidden))
	}
	if err := o.contradict(bad); err != nil {
		return nil, err
	}
	a, err := prefix.Load(m, o.InitAdapter, prefix.LoadOptions{BaseModel: o.BaseModel})
	if err != nil {
		return nil, o.initAdapterErr(err)
	}
	return a, nil
}
