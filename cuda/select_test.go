package cuda

import (
	"testing"

	"github.com/stretchr/testify/assert"
)

func TestDeviceOrdinal(t *testing.T) {
	for _, tc := range []struct {
		device  string
		ordinal int
		ok      bool
	}{
		{"cuda", 0, true},
		{"gpu", 0, true},
		{"cuda:0", 0, true},
		{"cuda:12", 12, true},
		{"cuda:", 0, false},
		{"cuda:-1", 0, false},
		{"cuda:+1", 0, false},
		{"cuda:01", 0, false},
		{"cuda:1x", 0, false},
		{"cuda1", 0, false},
		{"cpu", 0, false},
		{"auto", 0, false},
	} {
		ordinal, ok := DeviceOrdinal(tc.device)
		assert.Equal(t, tc.ok, ok, tc.device)
		assert.Equal(t, tc.ordinal, ordinal, tc.device)
	}
}
