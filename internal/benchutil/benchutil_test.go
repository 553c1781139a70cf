package benchutil

import (
	"bytes"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestMedian(t *testing.T) {
	for _, tc := range []struct {
		in   []float64
		want float64
	}{{nil, 0}, {[]float64{3}, 3}, {[]float64{5, 1, 3}, 3}, {[]float64{4, 1, 3, 2}, 2.5}} {
		assert.Equal(t, tc.want, Median(tc.in), tc.in)
	}
}

func TestParse(t *testing.T) {
	fs := NewFlagSet("demo", "Does a demo.")
	n := fs.Int("n", 1, "how many")
	var out bytes.Buffer
	help, err := Parse(fs, []string{"--n", "2"}, &out)
	require.NoError(t, err)
	assert.False(t, help)
	assert.Equal(t, 2, *n)
	for _, args := range [][]string{{"--nope"}, {"stray"}} {
		_, err := Parse(NewFlagSet("demo", ""), args, &out)
		require.Error(t, err)
		assert.Regexp(t, `^bench demo: `, err.Error())
		assert.NotContains(t, err.Error(), "\n")
	}
	help, err = Parse(NewFlagSet("demo", "Does a demo."), []string{"--help"}, &out)
	require.NoError(t, err)
	assert.True(t, help)
	assert.Contains(t, out.String(), "usage: gotune bench demo [flags]\n\nDoes a demo.")
}
