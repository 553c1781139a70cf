package train

import (
	"fmt"
	"image"
	"image/color"
	"image/png"
	"io"
	"math"
	"strconv"
	"strings"

	"github.com/gotune/gotune/engine/fsutil"
)

// Series is one curve of a plot.
type Series struct {
	// Name is shown in the legend.
	Name string
	// X and Y are the points, in order of X.
	X, Y  []float64
	Color color.RGBA
}

// Plot colours: a dark ink for axes and text, and line colours that stay
// distinct for colour-blind readers (blue and orange).
var (
	inkColor   = color.RGBA{40, 40, 40, 255}
	gridColor  = color.RGBA{225, 225, 225, 255}
	TrainColor = color.RGBA{31, 119, 180, 255}
	EvalColor  = color.RGBA{255, 127, 14, 255}
)

// Plot geometry in pixels.
const (
	plotW, plotH = 800, 480
	marginL      = 90
	marginR      = 24
	marginT      = 44
	marginB      = 60
	fontScale    = 2
)

// WriteLossPlot draws the series as a line chart titled title with the
// x axis labelled "step" and writes it atomically to path as PNG.
func WriteLossPlot(path, title string, series ...Series) error {
	img := DrawLossPlot(title, series...)
	return fsutil.WriteFileAtomic(path, 0o644, func(w io.Writer) error {
		return png.Encode(w, img)
	})
}

// DrawLossPlot renders the chart: white background, light grid, axes
// with about five "nice" ticks each (1, 2 or 5 times a power of ten)
// labelled with a built-in bitmap font, one line per series (points are
// marked when there are few), and a legend when there are several series.
func DrawLossPlot(title string, series ...Series) *image.RGBA {
	img := image.NewRGBA(image.Rect(0, 0, plotW, plotH))
	fillRect(img, 0, 0, plotW, plotH, color.RGBA{255, 255, 255, 255})

	x0, x1, y0, y1 := bounds(series)
	xTicks := niceTicks(x0, x1, 6)
	yTicks := niceTicks(y0, y1, 5)
	// Widen the ranges to the outer ticks so the grid frames the data.
	x0, x1 = math.Min(x0, xTicks[0]), math.Max(x1, xTicks[len(xTicks)-1])
	y0, y1 = math.Min(y0, yTicks[0]), math.Max(y1, yTicks[len(yTicks)-1])

	left, right := marginL, plotW-marginR
	top, bottom := marginT, plotH-marginB
	px := func(x float64) int { return left + int(math.Round((x-x0)/(x1-x0)*float64(right-left))) }
	py := func(y float64) int { return bottom - int(math.Round((y-y0)/(y1-y0)*float64(bottom-top))) }

	glyphPx := glyphH * fontScale
	xDec := decimals(xTicks)
	for _, t := range xTicks {
		x := px(t)
		fillRect(img, x, top, 1, bottom-top, gridColor)
		fillRect(img, x, bottom, 1, 6, inkColor)
		s := formatTick(t, xDec)
		drawText(img, x-textWidth(s, fontScale)/2, bottom+10, s, fontScale, inkColor)
	}
	yDec := decimals(yTicks)
	for _, t := range yTicks {
		y := py(t)
		fillRect(img, left, y, right-left, 1, gridColor)
		fillRect(img, left-6, y, 6, 1, inkColor)
		s := formatTick(t, yDec)
		drawText(img, left-10-textWidth(s, fontScale), y-glyphPx/2, s, fontScale, inkColor)
	}
	// Axes on top of the grid.
	fillRect(img, left, top, 2, bottom-top+1, inkColor)
	fillRect(img, left, bottom, right-left+1, 2, inkColor)
	drawText(img, (left+right-textWidth("step", fontScale))/2, plotH-glyphPx-8, "step", fontScale, inkColor)
	drawText(img, (plotW-textWidth(title, fontScale))/2, (marginT-glyphPx)/2, title, fontScale, inkColor)

	for _, s := range series {
		n := min(len(s.X), len(s.Y))
		for i := 0; i < n; i++ {
			if i > 0 {
				drawLine(img, px(s.X[i-1]), py(s.Y[i-1]), px(s.X[i]), py(s.Y[i]), s.Color)
			}
			if n <= 60 {
				fillRect(img, px(s.X[i])-3, py(s.Y[i])-3, 7, 7, s.Color)
			}
		}
	}
	if len(series) > 1 {
		ly := top + 8
		for _, s := range series {
			w := textWidth(s.Name, fontScale)
			lx := right - w - 40
			fillRect(img, lx, ly+glyphPx/2-1, 28, 3, s.Color)
			drawText(img, lx+34, ly, s.Name, fontScale, inkColor)
			ly += glyphPx + 8
		}
	}
	return img
}

// bounds returns the data range of all series, made non-empty.
func bounds(series []Series) (x0, x1, y0, y1 float64) {
	x0, y0 = math.Inf(1), math.Inf(1)
	x1, y1 = math.Inf(-1), math.Inf(-1)
	for _, s := range series {
		for i := 0; i < min(len(s.X), len(s.Y)); i++ {
			if math.IsNaN(s.Y[i]) || math.IsInf(s.Y[i], 0) {
				continue
			}
			x0, x1 = math.Min(x0, s.X[i]), math.Max(x1, s.X[i])
			y0, y1 = math.Min(y0, s.Y[i]), math.Max(y1, s.Y[i])
		}
	}
	if math.IsInf(x0, 1) { // no points at all
		return 0, 1, 0, 1
	}
	if x1 == x0 {
		x0, x1 = x0-1, x1+1
	}
	if y1 == y0 {
		d := math.Max(math.Abs(y0)*0.05, 0.5)
		y0, y1 = y0-d, y1+d
	}
	return x0, x1, y0, y1
}

// niceTicks returns evenly spaced ticks covering [lo, hi] with a step of
// 1, 2 or 5 times a power of ten, about want of them.
func niceTicks(lo, hi float64, want int) []float64 {
	raw := (hi - lo) / float64(want)
	mag := math.Pow(10, math.Floor(math.Log10(raw)))
	step := mag
	for _, m := range []float64{1, 2, 5, 10} {
		step = m * mag
		if step >= raw {
			break
		}
	}
	first := math.Floor(lo/step) * step
	var ticks []float64
	for t := first; t <= hi+step*1e-9; t += step {
		ticks = append(ticks, math.Round(t/step)*step)
	}
	if ticks[len(ticks)-1] < hi {
		ticks = append(ticks, ticks[len(ticks)-1]+step)
	}
	return ticks
}

// decimals returns the number of decimals needed to tell ticks apart.
func decimals(ticks []float64) int {
	if len(ticks) < 2 {
		return 0
	}
	step := ticks[1] - ticks[0]
	return max(0, int(math.Ceil(-math.Log10(step)-1e-9)))
}

// formatTick writes a tick value with dec decimals, switching to
// exponent form for very large or small magnitudes.
func formatTick(v float64, dec int) string {
	if v == 0 {
		return "0"
	}
	if a := math.Abs(v); a >= 1e6 || dec > 5 {
		s := strconv.FormatFloat(v, 'e', 1, 64)
		return strings.Replace(s, "e-0", "e-", 1)
	}
	return fmt.Sprintf("%.*f", dec, v)
}

// drawLine draws a 2-pixel-wide line with Bresenham's algorithm.
func drawLine(img *image.RGBA, xa, ya, xb, yb int, c color.RGBA) {
	dx, dy := abs(xb-xa), -abs(yb-ya)
	sx, sy := 1, 1
	if xa > xb {
		sx = -1
	}
	if ya > yb {
		sy = -1
	}
	e := dx + dy
	for {
		fillRect(img, xa, ya, 2, 2, c)
		if xa == xb && ya == yb {
			return
		}
		e2 := 2 * e
		if e2 >= dy {
			e += dy
			xa += sx
		}
		if e2 <= dx {
			e += dx
			ya += sy
		}
	}
}

func abs(v int) int {
	if v < 0 {
		return -v
	}
	return v
}
