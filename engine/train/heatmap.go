package train

import (
	"fmt"
	"image"
	"image/color"
	"image/png"
	"io"
	"math"

	"github.com/gotune/gotune/engine/fsutil"
)

// HeatMap is a matrix of values in [0, 1] drawn as coloured cells, each
// labelled with its value in percent (continual learning's accuracy
// matrix). NaN cells are grey and labelled "-".
type HeatMap struct {
	Title string
	// RowLabel and ColLabel name the axes; Rows and Cols label each row
	// and column.
	RowLabel, ColLabel string
	Rows, Cols         []string
	// Values[i][j] is the cell of row i, column j.
	Values [][]float64
}

// Heat-map geometry in pixels.
const (
	heatCell    = 96
	heatLabelW  = 170
	heatMarginT = 70
	heatMarginB = 60
	heatMarginR = 30
)

var missingColor = color.RGBA{200, 200, 200, 255}

// heatStops is a perceptually ordered dark-to-light ramp (viridis'
// endpoints and two midpoints).
var heatStops = []color.RGBA{{68, 1, 84, 255}, {59, 82, 139, 255}, {33, 145, 140, 255}, {94, 201, 98, 255}, {253, 231, 37, 255}}

// heatColor maps v in [0, 1] onto the ramp.
func heatColor(v float64) color.RGBA {
	v = math.Max(0, math.Min(1, v)) * float64(len(heatStops)-1)
	i := min(int(v), len(heatStops)-2)
	f := v - float64(i)
	a, b := heatStops[i], heatStops[i+1]
	mix := func(x, y uint8) uint8 { return uint8(math.Round(float64(x) + f*(float64(y)-float64(x)))) }
	return color.RGBA{mix(a.R, b.R), mix(a.G, b.G), mix(a.B, b.B), 255}
}

// Draw renders the heat map.
func (h *HeatMap) Draw() *image.RGBA {
	nr, nc := len(h.Rows), len(h.Cols)
	w := heatLabelW + nc*heatCell + heatMarginR
	ht := heatMarginT + nr*heatCell + heatMarginB
	img := image.NewRGBA(image.Rect(0, 0, w, ht))
	fillRect(img, 0, 0, w, ht, color.RGBA{255, 255, 255, 255})
	glyphPx := glyphH * fontScale
	drawText(img, (w-textWidth(h.Title, fontScale))/2, 12, h.Title, fontScale, inkColor)
	drawText(img, heatLabelW+(nc*heatCell-textWidth(h.ColLabel, fontScale))/2, 12+glyphPx+10, h.ColLabel, fontScale, inkColor)
	drawText(img, 8, heatMarginT-glyphPx-6, h.RowLabel, fontScale, inkColor)
	for j, name := range h.Cols {
		s := fitText(name, heatCell-6)
		drawText(img, heatLabelW+j*heatCell+(heatCell-textWidth(s, fontScale))/2, heatMarginT+nr*heatCell+10, s, fontScale, inkColor)
	}
	for i, name := range h.Rows {
		y := heatMarginT + i*heatCell
		s := fitText(name, heatLabelW-14)
		drawText(img, heatLabelW-8-textWidth(s, fontScale), y+(heatCell-glyphPx)/2, s, fontScale, inkColor)
		for j := range h.Cols {
			v := math.NaN()
			if j < len(h.Values[i]) {
				v = h.Values[i][j]
			}
			x := heatLabelW + j*heatCell
			c, label, ink := missingColor, "-", inkColor
			if !math.IsNaN(v) {
				c, label = heatColor(v), fmt.Sprintf("%.0f", 100*v)
				if v < 0.6 { // light text on the dark end of the ramp
					ink = color.RGBA{255, 255, 255, 255}
				}
			}
			fillRect(img, x+1, y+1, heatCell-2, heatCell-2, c)
			drawText(img, x+(heatCell-textWidth(label, fontScale))/2, y+(heatCell-glyphPx)/2, label, fontScale, ink)
		}
	}
	return img
}

// fitText shortens s to at most px pixels at the plot's font scale.
func fitText(s string, px int) string {
	r := []rune(s)
	for len(r) > 1 && textWidth(string(r), fontScale) > px {
		r = r[:len(r)-1]
	}
	return string(r)
}

// Write draws the heat map and writes it atomically to path as PNG.
func (h *HeatMap) Write(path string) error {
	img := h.Draw()
	return fsutil.WriteFileAtomic(path, 0o644, func(w io.Writer) error {
		return png.Encode(w, img)
	})
}
