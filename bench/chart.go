package bench

import (
	"fmt"
	"image"
	"image/color"
	"image/draw"
	"image/png"
	"io"
	"math"
	"strings"

	"golang.org/x/image/font"
	"golang.org/x/image/font/gofont/gobold"
	"golang.org/x/image/font/gofont/goregular"
	"golang.org/x/image/font/opentype"
	"golang.org/x/image/math/fixed"
)

// The chart is drawn with the standard library's image packages and the Go
// fonts from golang.org/x/image: one panel per scenario, one horizontal bar per
// target, each labelled with its median and its ratio to HAProxy. Scenarios
// have different units, so each panel has its own scale; a grouped-bar
// chart of ratios would hide the absolute figures an operator sizes with.
// (go-chart has no grouped or multi-panel bars; gonum/plot would add about
// ten modules to an ADC's dependency graph for one picture.)

var targetColors = map[string]color.RGBA{
	Direct:        {0x9e, 0x9e, 0x9e, 0xff},
	Fulcrum:       {0xe6, 0x6a, 0x00, 0xff},
	HAProxy:       {0x1f, 0x5f, 0xb4, 0xff},
	HAProxySplice: {0x6b, 0x9b, 0xd8, 0xff},
	Nginx:         {0x2e, 0x8b, 0x3e, 0xff},
	Caddy:         {0x1f, 0x9e, 0x9e, 0xff},
	FulcrumFastL4: {0xa8, 0x3c, 0x00, 0xff},
}

// colorOf is a target's bar colour; the scaling scenario's rows
// ("fulcrum-2cpu") take their proxy's.
func colorOf(target string) (color.RGBA, bool) {
	if c, ok := targetColors[target]; ok {
		return c, true
	}
	if i := strings.LastIndexByte(target, '-'); i > 0 {
		c, ok := targetColors[target[:i]]
		return c, ok
	}
	return color.RGBA{}, false
}

type chartFonts struct{ title, label font.Face }

func loadFonts() (chartFonts, error) {
	reg, err := opentype.Parse(goregular.TTF)
	if err != nil {
		return chartFonts{}, err
	}
	bold, err := opentype.Parse(gobold.TTF)
	if err != nil {
		return chartFonts{}, err
	}
	label, err := opentype.NewFace(reg, &opentype.FaceOptions{Size: 14, DPI: 72, Hinting: font.HintingFull})
	if err != nil {
		return chartFonts{}, err
	}
	title, err := opentype.NewFace(bold, &opentype.FaceOptions{Size: 16, DPI: 72, Hinting: font.HintingFull})
	if err != nil {
		return chartFonts{}, err
	}
	return chartFonts{title: title, label: label}, nil
}

// WriteChart draws r's headline figures as a PNG.
func WriteChart(w io.Writer, r *Result) error {
	f, err := loadFonts()
	if err != nil {
		return fmt.Errorf("chart fonts: %w", err)
	}
	const (
		width    = 1000
		margin   = 20
		labelW   = 130
		textW    = 300
		barH     = 18
		rowH     = 24
		titleH   = 30
		panelGap = 16
	)
	height := margin + 26 + 22
	for _, s := range r.Scenarios {
		height += titleH + rowH*len(s.Rows) + panelGap
	}
	height += margin
	img := image.NewRGBA(image.Rect(0, 0, width, height))
	draw.Draw(img, img.Bounds(), &image.Uniform{color.White}, image.Point{}, draw.Src)
	black := color.RGBA{0x20, 0x20, 0x20, 0xff}
	grey := color.RGBA{0x70, 0x70, 0x70, 0xff}

	y := margin + 18
	text(img, f.title, margin, y, black, "Fulcrum beside HAProxy, nginx, Caddy and direct — "+r.Started)
	y += 22
	text(img, f.label, margin, y, grey, fmt.Sprintf("medians of %d round(s) × %s; %s", r.Rounds, r.Duration, r.Machine.Pinning))
	y += 26
	barX := margin + labelW
	barMax := width - margin - textW - barX
	for _, s := range r.Scenarios {
		head := s.Metrics[0]
		note := ""
		if head.LowerIsBetter {
			note = " (lower is better)"
		}
		text(img, f.title, margin, y+4, black, s.Title+" — "+head.Label+note)
		y += titleH - 8
		max := 0.0
		for _, row := range s.Rows {
			if v := row.Median(head.Key); !math.IsNaN(v) && v > max {
				max = v
			}
		}
		for _, row := range s.Rows {
			text(img, f.label, margin, y+barH-4, black, row.Target)
			v := row.Median(head.Key)
			if row.Unavailable != "" || math.IsNaN(v) || max <= 0 {
				msg := "no figure"
				if row.Unavailable != "" {
					msg = "unavailable"
				}
				text(img, f.label, barX, y+barH-4, grey, msg)
				y += rowH
				continue
			}
			n := int(math.Round(v / max * float64(barMax)))
			if n < 1 {
				n = 1
			}
			c, ok := colorOf(row.Target)
			if !ok {
				c = grey
			}
			draw.Draw(img, image.Rect(barX, y, barX+n, y+barH), &image.Uniform{c}, image.Point{}, draw.Src)
			label := FormatValue(v, head.Unit)
			if ref := RefOf(row); row.Target != ref {
				if ratio := s.Ratio(row.Target, ref, head.Key); !math.IsNaN(ratio) {
					label += "  (" + FormatRatio(ratio) + " HAProxy)"
				}
			}
			text(img, f.label, barX+n+8, y+barH-4, black, label)
			y += rowH
		}
		y += panelGap
	}
	return png.Encode(w, img)
}

func text(img draw.Image, face font.Face, x, y int, c color.Color, s string) {
	d := font.Drawer{Dst: img, Src: image.NewUniform(c), Face: face, Dot: fixed.P(x, y)}
	d.DrawString(s)
}
