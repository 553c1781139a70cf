package fielderr_test

import (
	"fmt"

	"github.com/gotune/gotune/engine/fielderr"
	"github.com/gotune/gotune/engine/train"
)

// A library config names a wrong field by its Go name; a caller that
// exposes it under other names (a struct holding the config, a
// command-line flag) words the same error in its own terms.
func ExampleError() {
	cfg := train.Config{Steps: 10, GradAccum: 1, LR: 1e-4, Schedule: train.Linear,
		WarmupRatio: 0.1, WarmupSteps: 5, Beta1: 0.9, Beta2: 0.999, Eps: 1e-8}
	err := cfg.Validate()
	fmt.Println(err)

	fe, _ := fielderr.As(err)
	fmt.Println(fe.Under("Train"))
	flags := map[string]string{"WarmupRatio": "--warmup-ratio", "WarmupSteps": "--warmup-steps"}
	fmt.Println(fe.Message(func(field string) string { return flags[field] }))
	// Output:
	// WarmupRatio and WarmupSteps exclude each other (got 0.1 and 5)
	// Train.WarmupRatio and Train.WarmupSteps exclude each other (got 0.1 and 5)
	// --warmup-ratio and --warmup-steps exclude each other (got 0.1 and 5)
}
