package train

import (
	"image"
	"image/color"
	"math"
	"os"
	"testing"
)

func TestNiceTicks(t *testing.T) {
	tests := []struct {
		lo, hi float64
		want   []float64
	}{
		{1, 100, []float64{0, 20, 40, 60, 80, 100}},
		{2.31, 3.97, []float64{2, 2.5, 3, 3.5, 4}},
		{0, 1, []float64{0, 0.2, 0.4, 0.6, 0.8, 1}},
		{1, 3, []float64{1, 1.5, 2, 2.5, 3}},
	}
	for _, tc := range tests {
		got := niceTicks(tc.lo, tc.hi, 5)
		if len(got) != len(tc.want) {
			t.Errorf("niceTicks(%v, %v) = %v, want %v", tc.lo, tc.hi, got, tc.want)
			continue
		}
		for i := range got {
			if math.Abs(got[i]-tc.want[i]) > 1e-12 {
				t.Errorf("niceTicks(%v, %v) = %v, want %v", tc.lo, tc.hi, got, tc.want)
				break
			}
		}
	}
}

func TestFormatTick(t *testing.T) {
	for _, tc := range []struct {
		v    float64
		dec  int
		want string
	}{
		{0, 2, "0"}, {2.5, 1, "2.5"}, {40, 0, "40"}, {3e6, 0, "3.0e+06"}, {1.5e-7, 8, "1.5e-7"},
	} {
		if got := formatTick(tc.v, tc.dec); got != tc.want {
			t.Errorf("formatTick(%v, %d) = %q, want %q", tc.v, tc.dec, got, tc.want)
		}
	}
	if d := decimals([]float64{2.2, 2.4}); d != 1 {
		t.Errorf("decimals of 0.2 steps = %d", d)
	}
}

// The glyphs must be distinct, or labels would be ambiguous.
func TestGlyphsDistinct(t *testing.T) {
	seen := map[[glyphH]string]rune{}
	for r, g := range glyphs {
		for _, row := range g {
			if len(row) != glyphW {
				t.Errorf("glyph %q has a row of width %d", r, len(row))
			}
		}
		if other, dup := seen[g]; dup && r != ' ' {
			t.Errorf("glyphs %q and %q are identical", r, other)
		}
		seen[g] = r
	}
}

func countColor(img *image.RGBA, r image.Rectangle, c color.RGBA) int {
	n := 0
	for y := r.Min.Y; y < r.Max.Y; y++ {
		for x := r.Min.X; x < r.Max.X; x++ {
			if img.RGBAAt(x, y) == c {
				n++
			}
		}
	}
	return n
}

func TestDrawLossPlot(t *testing.T) {
	var xs, ys []float64
	for i := 1; i <= 200; i++ {
		xs = append(xs, float64(i))
		ys = append(ys, 2+3*math.Exp(-float64(i)/40)+0.1*math.Sin(float64(i)))
	}
	img := DrawLossPlot("training loss", Series{Name: "train", X: xs, Y: ys, Color: TrainColor},
		Series{Name: "eval", X: []float64{50, 100, 150, 200}, Y: []float64{3.5, 2.9, 2.6, 2.4}, Color: EvalColor})
	if p := os.Getenv("GOTUNE_PLOT_OUT"); p != "" { // for looking at it
		if err := WriteLossPlot(p, "training loss", Series{Name: "train", X: xs, Y: ys, Color: TrainColor}); err != nil {
			t.Fatal(err)
		}
	}
	area := image.Rect(marginL+2, marginT, plotW-marginR, plotH-marginB)
	if n := countColor(img, area, TrainColor); n < 400 {
		t.Errorf("only %d train-coloured pixels in the plot area", n)
	}
	if n := countColor(img, area, EvalColor); n < 50 {
		t.Errorf("only %d eval-coloured pixels in the plot area", n)
	}
	// Tick labels: ink left of the y axis and below the x axis.
	if n := countColor(img, image.Rect(0, marginT, marginL-8, plotH-marginB), inkColor); n < 100 {
		t.Errorf("no y tick labels (%d ink pixels)", n)
	}
	if n := countColor(img, image.Rect(marginL, plotH-marginB+8, plotW, plotH), inkColor); n < 100 {
		t.Errorf("no x tick labels (%d ink pixels)", n)
	}
	// The curve's first point (highest loss) is drawn near the top left,
	// its last near the bottom right: the axes are not flipped.
	if countColor(img, image.Rect(marginL, marginT, marginL+60, marginT+120), TrainColor) == 0 ||
		countColor(img, image.Rect(plotW-marginR-60, plotH-marginB-200, plotW-marginR+2, plotH-marginB), TrainColor) == 0 {
		t.Error("curve not where the data puts it")
	}
}

func TestDrawLossPlotDegenerate(t *testing.T) {
	// One point, and a flat line: no division by zero, the point is drawn.
	for _, s := range []Series{
		{X: []float64{1}, Y: []float64{2.5}, Color: TrainColor},
		{X: []float64{1, 2, 3}, Y: []float64{1, 1, 1}, Color: TrainColor},
		{},
	} {
		img := DrawLossPlot("loss", s)
		if len(s.X) > 0 && countColor(img, img.Bounds(), TrainColor) == 0 {
			t.Errorf("series %v not drawn", s)
		}
	}
}
