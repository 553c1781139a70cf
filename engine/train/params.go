package train

import (
	"fmt"
	"strconv"

	"github.com/gotune/gotune/engine"
)

// CountParams returns the number of trainable elements and of all
// elements in params.
func CountParams(params []*engine.Param) (trainable, total int64) {
	for _, p := range params {
		n := int64(p.W.Len())
		total += n
		if p.Trainable {
			trainable += n
		}
	}
	return trainable, total
}

// ParamSummary returns the line every run prints, in PEFT's
// print_trainable_parameters form:
// "trainable params: 1,234 || all params: 5,678 || trainable%: 21.7329".
func ParamSummary(params []*engine.Param) string {
	tr, all := CountParams(params)
	pct := 0.0
	if all > 0 {
		pct = 100 * float64(tr) / float64(all)
	}
	return fmt.Sprintf("trainable params: %s || all params: %s || trainable%%: %.4f", groupDigits(tr), groupDigits(all), pct)
}

// groupDigits writes n with commas between groups of three digits.
func groupDigits(n int64) string {
	s := strconv.FormatInt(n, 10)
	neg := s[0] == '-'
	if neg {
		s = s[1:]
	}
	var out []byte
	for i := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			out = append(out, ',')
		}
		out = append(out, s[i])
	}
	if neg {
		return "-" + string(out)
	}
	return string(out)
}
