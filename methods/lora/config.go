package lora

import (
	"encoding/json"
	"fmt"
	"math"
	"sort"
	"strconv"
	"strings"

	"github.com/gotune/gotune/engine/fielderr"
	"github.com/gotune/gotune/methods/peft"
)

// PEFT's tensor names within a LoRA module.
const (
	leafA = "lora_A.weight"
	leafB = "lora_B.weight"
	// leafM is DoRA's magnitude vector as PEFT saves it: the DoRA
	// sub-module's ".weight" is dropped so the key predates its refactor.
	leafM = "lora_magnitude_vector"
	// leafMAlt is the same tensor with ".weight", which PEFT also accepts
	// when loading.
	leafMAlt = "lora_magnitude_vector.weight"
)

// PeftType is adapter_config.json's peft_type for LoRA (and DoRA).
const PeftType = "LORA"

// AllLinear is PEFT's target shorthand for every linear layer but the
// output layer.
const AllLinear = "all-linear"

// Init names an initialisation of A (B always starts at zero).
type Init string

const (
	// InitKaiming draws A from kaiming-uniform with a = sqrt(5), i.e.
	// U(−1/sqrt(in), 1/sqrt(in)): PEFT's default (init_lora_weights true).
	InitKaiming Init = "kaiming"
	// InitGaussian draws A from N(0, 1/r²) (init_lora_weights "gaussian").
	InitGaussian Init = "gaussian"
)

// Config holds LoRA's hyper-parameters.
type Config struct {
	// R is the rank r of the update.
	R int
	// Alpha is lora_alpha; the update is scaled by Alpha/R, or by
	// Alpha/sqrt(R) with RSLoRA.
	Alpha float64
	// Dropout is the dropout probability on the low-rank branch's input.
	Dropout float64
	// Targets are module names matched as PEFT matches a list: a module is
	// targeted when its path equals a name or ends with "." + name
	// ("q_proj", "self_attn.q_proj", "model.layers.0.mlp.up_proj"); the
	// single entry "all-linear" targets every linear layer but lm_head.
	Targets []string
	// TargetRegex, when set instead of Targets, targets the modules whose
	// whole path matches it (PEFT's string form of target_modules; RE2
	// syntax here).
	TargetRegex string
	// RSLoRA scales by Alpha/sqrt(R) (use_rslora).
	RSLoRA bool
	// DoRA adds the magnitude vector (use_dora).
	DoRA bool
	// Init is A's initialisation ("" means InitKaiming).
	Init Init
	// Seed seeds the initialisation and the dropout masks.
	Seed uint64
	// BaseModel is recorded as base_model_name_or_path.
	BaseModel string
}

// Scaling returns the factor s of the low-rank term.
func (c *Config) Scaling() float64 {
	if c.RSLoRA {
		return c.Alpha / math.Sqrt(float64(c.R))
	}
	return c.Alpha / float64(c.R)
}

// Validate reports the first invalid hyper-parameter as a
// *fielderr.Error naming its field ("R", "Alpha", ...).
func (c *Config) Validate() error {
	switch {
	case c.R < 1:
		return fielderr.Errorf("R", "must be at least 1, got %d", c.R)
	case !(c.Alpha > 0) || math.IsInf(c.Alpha, 0):
		return fielderr.Errorf("Alpha", "must be a positive number, got %v", c.Alpha)
	case !(c.Dropout >= 0 && c.Dropout < 1):
		return fielderr.Errorf("Dropout", "must be in [0, 1), got %v", c.Dropout)
	case len(c.Targets) == 0 && c.TargetRegex == "":
		return fielderr.Errorf("Targets", "names no module")
	case c.Init != "" && c.Init != InitKaiming && c.Init != InitGaussian:
		return fielderr.Errorf("Init", "must be kaiming or gaussian, got %q", c.Init)
	}
	for _, t := range c.Targets {
		if strings.TrimSpace(t) == "" {
			return fielderr.Errorf("Targets", "has an empty module name")
		}
		if t == AllLinear && len(c.Targets) > 1 {
			return fielderr.Errorf("Targets", "%q cannot be combined with other names", AllLinear)
		}
	}
	return nil
}

// ParseTargets splits a comma-separated --lora-targets value.
func ParseTargets(s string) []string {
	var out []string
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}

// PeftConfig is LoraConfig as PEFT 0.14 saves it in adapter_config.json:
// every key, so PEFT loads the file and no key surprises it. gotune
// writes the keys it does not implement with PEFT's defaults and rejects
// files that set them (see configFromPeft).
type PeftConfig struct {
	// AlphaPattern and RankPattern override alpha and r per module (unsupported).
	AlphaPattern map[string]float64 `json:"alpha_pattern"`
	RankPattern  map[string]int     `json:"rank_pattern"`
	// AutoMapping records a custom model class (always null here).
	AutoMapping any `json:"auto_mapping"`
	// BaseModelNameOrPath is the model the adapter belongs to.
	BaseModelNameOrPath *string `json:"base_model_name_or_path"`
	// Bias is "none" (trainable biases are unsupported); LoraBias (a bias
	// on lora_B) must be false.
	Bias     string `json:"bias"`
	LoraBias bool   `json:"lora_bias"`
	// EvaConfig, LoftqConfig, MegatronConfig and MegatronCore configure
	// initialisations and parallelism gotune does not use.
	EvaConfig      any            `json:"eva_config"`
	LoftqConfig    map[string]any `json:"loftq_config"`
	MegatronConfig any            `json:"megatron_config"`
	MegatronCore   *string        `json:"megatron_core"`
	// ExcludeModules, LayersPattern, LayersToTransform and
	// LayerReplication restrict or replicate layers (unsupported).
	ExcludeModules    any `json:"exclude_modules"`
	LayersPattern     any `json:"layers_pattern"`
	LayersToTransform any `json:"layers_to_transform"`
	LayerReplication  any `json:"layer_replication"`
	// FanInFanOut is true when the targets store weights [in, out]
	// (GPT-2's Conv1D).
	FanInFanOut bool `json:"fan_in_fan_out"`
	// InferenceMode is true in saved files.
	InferenceMode bool `json:"inference_mode"`
	// InitLoraWeights is true (kaiming), false, or a method name such as
	// "gaussian".
	InitLoraWeights any `json:"init_lora_weights"`
	// LoraAlpha, LoraDropout, R, UseRslora and UseDora are Config's
	// Alpha, Dropout, R, RSLoRA and DoRA.
	LoraAlpha   number     `json:"lora_alpha"`
	LoraDropout peft.Float `json:"lora_dropout"`
	R           int        `json:"r"`
	UseRslora   bool       `json:"use_rslora"`
	UseDora     bool       `json:"use_dora"`
	// ModulesToSave lists fully trained extra modules (unsupported).
	ModulesToSave []string `json:"modules_to_save"`
	// PeftType is "LORA"; TaskType "CAUSAL_LM".
	PeftType string  `json:"peft_type"`
	TaskType *string `json:"task_type"`
	// Revision is the base model's revision.
	Revision *string `json:"revision"`
	// TargetModules names the wrapped modules: a list, or a regular
	// expression string.
	TargetModules targetModules `json:"target_modules"`
}

// number is a JSON number written as an integer when it is one (PEFT's
// lora_alpha is an int unless the user gave a float).
type number float64

// MarshalJSON writes integral values without a fraction.
func (n number) MarshalJSON() ([]byte, error) {
	v := float64(n)
	if v == math.Trunc(v) && math.Abs(v) < 1e15 {
		return []byte(strconv.FormatInt(int64(v), 10)), nil
	}
	return json.Marshal(peft.Float(v))
}

// targetModules is PEFT's target_modules: a list of names or one regular
// expression string.
type targetModules struct {
	List  []string
	Regex string
	IsSet bool // false: JSON null
}

// MarshalJSON writes the list (or the string).
func (t targetModules) MarshalJSON() ([]byte, error) {
	switch {
	case !t.IsSet:
		return []byte("null"), nil
	case t.List != nil:
		return json.Marshal(t.List)
	default:
		return json.Marshal(t.Regex)
	}
}

// UnmarshalJSON accepts a list of strings, a string or null.
func (t *targetModules) UnmarshalJSON(b []byte) error {
	*t = targetModules{}
	s := strings.TrimSpace(string(b))
	if s == "null" {
		return nil
	}
	t.IsSet = true
	if strings.HasPrefix(s, "[") {
		return json.Unmarshal(b, &t.List)
	}
	return json.Unmarshal(b, &t.Regex)
}

// peftConfig returns the adapter_config.json content for an adapter with
// the given resolved target names.
func (c *Config) peftConfig(targets []string, fanInFanOut bool) *PeftConfig {
	task := peft.TaskCausalLM
	core := "megatron.core"
	pc := &PeftConfig{
		AlphaPattern: map[string]float64{}, Bias: "none", FanInFanOut: fanInFanOut,
		InferenceMode: true, InitLoraWeights: true, LoftqConfig: map[string]any{},
		LoraAlpha: number(c.Alpha), LoraDropout: peft.Float(c.Dropout), MegatronCore: &core,
		PeftType: PeftType, R: c.R, RankPattern: map[string]int{}, TaskType: &task,
		UseDora: c.DoRA, UseRslora: c.RSLoRA,
	}
	if c.Init == InitGaussian {
		pc.InitLoraWeights = string(InitGaussian)
	}
	if c.BaseModel != "" {
		b := c.BaseModel
		pc.BaseModelNameOrPath = &b
	}
	if c.TargetRegex != "" {
		pc.TargetModules = targetModules{Regex: c.TargetRegex, IsSet: true}
	} else {
		pc.TargetModules = targetModules{List: targets, IsSet: true}
	}
	return pc
}

// configFromPeft converts a loaded adapter_config.json into a Config,
// rejecting the LoRA features gotune does not implement.
func configFromPeft(pc *PeftConfig, where string) (Config, error) {
	c := Config{
		R: pc.R, Alpha: float64(pc.LoraAlpha), Dropout: float64(pc.LoraDropout),
		RSLoRA: pc.UseRslora, DoRA: pc.UseDora, Init: InitKaiming,
	}
	if pc.BaseModelNameOrPath != nil {
		c.BaseModel = *pc.BaseModelNameOrPath
	}
	if s, ok := pc.InitLoraWeights.(string); ok && s == string(InitGaussian) {
		c.Init = InitGaussian
	}
	unsupported := func(key, why string) error {
		return fmt.Errorf("%s: %s: %s is not supported by gotune's LoRA", where, key, why)
	}
	switch {
	case pc.Bias != "" && pc.Bias != "none":
		return c, unsupported("bias", fmt.Sprintf("%q (trainable biases)", pc.Bias))
	case pc.LoraBias:
		return c, unsupported("lora_bias", "true (a bias on lora_B)")
	case len(pc.RankPattern) > 0:
		return c, unsupported("rank_pattern", "a per-module rank")
	case len(pc.AlphaPattern) > 0:
		return c, unsupported("alpha_pattern", "a per-module alpha")
	case len(pc.ModulesToSave) > 0:
		return c, unsupported("modules_to_save", fmt.Sprintf("%v (fully trained extra modules)", pc.ModulesToSave))
	case pc.LayersToTransform != nil:
		return c, unsupported("layers_to_transform", "a layer subset")
	case pc.LayerReplication != nil:
		return c, unsupported("layer_replication", "layer replication")
	case pc.ExcludeModules != nil:
		return c, unsupported("exclude_modules", "excluded modules")
	case !pc.TargetModules.IsSet:
		return c, fmt.Errorf("%s: target_modules is null", where)
	}
	if pc.TargetModules.List != nil {
		c.Targets = append([]string(nil), pc.TargetModules.List...)
		sort.Strings(c.Targets)
	} else if pc.TargetModules.Regex == AllLinear {
		c.Targets = []string{AllLinear}
	} else {
		c.TargetRegex = pc.TargetModules.Regex
	}
	if err := c.Validate(); err != nil {
		return c, fmt.Errorf("%s: %w", where, err)
	}
	return c, nil
}

func key(path, leaf string) string { return peft.Key(path, leaf) }
