package train

import (
	"fmt"
	"math"
	"strings"
)

// Schedule names a learning-rate schedule.
type Schedule string

// The schedules, each with linear warmup from 0, as Hugging Face's
// get_constant_schedule_with_warmup, get_linear_schedule_with_warmup and
// get_cosine_schedule_with_warmup (half a cosine wave) define them.
const (
	Constant Schedule = "constant"
	Linear   Schedule = "linear"
	Cosine   Schedule = "cosine"
)

// Schedules lists the valid schedule names, for flag help and errors.
var Schedules = []Schedule{Constant, Linear, Cosine}

// ParseSchedule validates a schedule name.
func ParseSchedule(s string) (Schedule, error) {
	for _, k := range Schedules {
		if Schedule(s) == k {
			return k, nil
		}
	}
	return "", fmt.Errorf("unknown learning-rate schedule %q (want %s)", s, scheduleNames())
}

// scheduleNames lists the schedules for messages.
func scheduleNames() string {
	names := make([]string, len(Schedules))
	for i, k := range Schedules {
		names[i] = string(k)
	}
	return strings.Join(names, ", ")
}

// Multiplier returns the factor applied to the base learning rate after
// `done` completed optimizer steps, out of total, with warmup warmup steps.
// Like torch's LambdaLR, optimizer step k (1-based) uses Multiplier(k-1):
// with warmup the first step has learning rate 0.
func (s Schedule) Multiplier(done, warmup, total int) float64 {
	if done < warmup {
		return float64(done) / float64(max(1, warmup))
	}
	switch s {
	case Linear:
		return max(0, float64(total-done)/float64(max(1, total-warmup)))
	case Cosine:
		progress := float64(done-warmup) / float64(max(1, total-warmup))
		return max(0, 0.5*(1+math.Cos(math.Pi*progress)))
	default:
		return 1
	}
}
