package engine

import (
	"errors"
	"testing"

	"github.com/stretchr/testify/assert"
)

func TestOutOfMemoryError(t *testing.T) {
	driver := errors.New("driver: out of memory")
	err := &OutOfMemoryError{Device: "cuda:0", Requested: 3 << 29, Stats: MemoryStats{InUse: 70 << 30, Peak: 75 << 30}, Err: driver}
	assert.Equal(t, "out of device memory allocating 1536.0 MiB (71680.0 MiB in use, peak 76800.0 MiB)", err.Error())
	assert.ErrorIs(t, err, driver)
}

func TestFormatMiB(t *testing.T) {
	for _, tc := range []struct {
		bytes uint64
		want  string
	}{
		{0, "0 MiB"},
		{12_900, "0.0123 MiB"},
		{1 << 20, "1.0 MiB"},
		{25 << 19, "12.5 MiB"},
	} {
		assert.Equal(t, tc.want, FormatMiB(tc.bytes), "%d bytes", tc.bytes)
	}
}
