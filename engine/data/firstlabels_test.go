package data

import (
	"slices"
	"testing"
)

// TestFirstLabels checks that every batch row carries labels[0], which no
// shifted target covers, and counts the scored ones apart from Counted.
func TestFirstLabels(t *testing.T) {
	ds := mkDataset(3, 4, 2)
	ds.Examples[1].Labels = []int32{-100, 101, 102, 103}
	l, err := NewLoader(ds, LoaderConfig{BatchSize: 2, SeqLen: 4})
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []struct {
		first   []int32
		counted int
	}{
		{[]int32{0, -100}, 1},
		{[]int32{200}, 1},
	} {
		b := l.Next()
		if !slices.Equal(b.FirstLabels, want.first) || b.CountedFirst != want.counted {
			t.Errorf("batch %d: first labels %v (%d counted), want %v (%d)", b.Index, b.FirstLabels, b.CountedFirst, want.first, want.counted)
		}
	}
}
