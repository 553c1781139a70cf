package continual

import (
	"math"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/gotune/gotune/internal/fieldpaths"
)

// Each wrong setting of the chosen strategy names its Config field.
func TestConfigValidate(t *testing.T) {
	valid := func(s Strategy) Config {
		return Config{
			Strategy: s, Steps: 1, BatchSize: 2, SeqLen: 8,
			ReplaySize: 4, ReplayRatio: 0.5, FisherSamples: 1,
			NewAdapter: func(int) (LowRankAdapter, error) { return nil, nil },
		}
	}
	for _, tc := range []struct {
		strategy Strategy
		edit     func(*Config)
		want     string
	}{
		{StrategyNaive, func(c *Config) { c.Strategy = "mixed" }, `Strategy "mixed": unknown strategy (available: naive, replay, ewc, olora, per-task, joint)`},
		{StrategyNaive, func(c *Config) { c.Steps = 0 }, "Steps must be at least 1, got 0"},
		{StrategyNaive, func(c *Config) { c.BatchSize = 0 }, "BatchSize must be at least 1, got 0"},
		{StrategyNaive, func(c *Config) { c.SeqLen = 1 }, "SeqLen must be at least 2, got 1"},
		{StrategyReplay, func(c *Config) { c.ReplaySize = 0 }, "ReplaySize must be at least 1, got 0"},
		{StrategyReplay, func(c *Config) { c.ReplayRatio = 1 }, "ReplayRatio must be in (0, 1), got 1"},
		{StrategyEWC, func(c *Config) { c.EWCLambda = math.NaN() }, "EWCLambda must be a non-negative number, got NaN"},
		{StrategyEWC, func(c *Config) { c.EWCOnline, c.EWCGamma = true, 2 }, "EWCGamma must be in [0, 1], got 2"},
		{StrategyEWC, func(c *Config) { c.FisherSamples = 0 }, "FisherSamples must be at least 1, got 0"},
		{StrategyOLoRA, func(c *Config) { c.OLoRALambda = -1 }, "OLoRALambda must be a non-negative number, got -1"},
		{StrategyOLoRA, func(c *Config) { c.NewAdapter = nil }, "NewAdapter is nil: o-lora trains a LoRA adapter per task"},
	} {
		t.Run(tc.want, func(t *testing.T) {
			c := valid(tc.strategy)
			tc.edit(&c)
			err := c.Validate()
			require.ErrorContains(t, err, tc.want)
			fieldpaths.RequireFieldError(t, err, Config{})
		})
	}
	for _, s := range Strategies() {
		c := valid(s)
		require.NoError(t, c.Validate(), s)
	}
}
