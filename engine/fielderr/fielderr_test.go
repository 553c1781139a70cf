package fielderr

import (
	"fmt"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestMessageNamesFields(t *testing.T) {
	e := Errorf("WarmupRatio", "and %s exclude each other (got %v and %d)", Ref("WarmupSteps"), 0.1, 5)
	flags := map[string]string{"WarmupRatio": "--warmup-ratio", "WarmupSteps": "--warmup-steps"}
	for _, tc := range []struct {
		name string
		fn   func(string) string
		want string
	}{
		{"paths", nil, "WarmupRatio and WarmupSteps exclude each other (got 0.1 and 5)"},
		{"flags", func(p string) string { return flags[p] }, "--warmup-ratio and --warmup-steps exclude each other (got 0.1 and 5)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			assert.Equal(t, tc.want, e.Message(tc.fn))
		})
	}
	assert.Equal(t, e.Message(nil), e.Error())
	assert.Equal(t, []string{"WarmupRatio", "WarmupSteps"}, e.Fields())
}

func TestUnderAndMapRenamePaths(t *testing.T) {
	e := Errorf("Steps", "and %s are both 0", Ref("Epochs"))
	u := e.Under("Train")
	assert.Equal(t, "Train.Steps", u.Field)
	assert.Equal(t, []string{"Train.Steps", "Train.Epochs"}, u.Fields())
	assert.Equal(t, "Train.Steps and Train.Epochs are both 0", u.Error())
	assert.Equal(t, "Steps and Epochs are both 0", e.Error(), "Under copies")

	m := e.Map(func(p string) string { return map[string]string{"Steps": "S"}[p] })
	assert.Equal(t, []string{"S", ""}, m.Fields())
}

func TestAsFindsWrappedError(t *testing.T) {
	fe, ok := As(fmt.Errorf("context: %w", Errorf("R", "must be at least 1, got %d", 0)))
	require.True(t, ok)
	assert.Equal(t, "R", fe.Field)
	_, ok = As(fmt.Errorf("plain"))
	assert.False(t, ok)
}
