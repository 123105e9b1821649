package experiments

import (
	"fmt"
	"io"
	"math"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/plotutil"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
)

// series is one line or set of points of a plot.
type series struct {
	name   string
	xs, ys []float64
	// style: "line", "points", "linepoints" or "dashed".
	style string
	color int
}

// figure is a plot to be saved as PNG and SVG.
type figure struct {
	title, xLabel, yLabel string
	logX, logY            bool
	series                []series
	// note is a second title line.
	note string
}

func (f figure) build() (*plot.Plot, error) {
	p := plot.New()
	p.Title.Text = f.title
	if f.note != "" {
		p.Title.Text += "\n" + f.note
	}
	p.X.Label.Text, p.Y.Label.Text = f.xLabel, f.yLabel
	if f.logX {
		p.X.Scale, p.X.Tick.Marker = plot.LogScale{}, plot.LogTicks{Prec: -1}
	}
	if f.logY {
		p.Y.Scale, p.Y.Tick.Marker = plot.LogScale{}, plot.LogTicks{Prec: -1}
	}
	p.Add(plotter.NewGrid())
	p.Legend.Top, p.Legend.Left = true, true
	for _, s := range f.series {
		pts := make(plotter.XYs, 0, len(s.xs))
		for i := range s.xs {
			x, y := s.xs[i], s.ys[i]
			if math.IsNaN(x) || math.IsNaN(y) || math.IsInf(y, 0) || (f.logY && y <= 0) || (f.logX && x <= 0) {
				continue
			}
			pts = append(pts, plotter.XY{X: x, Y: y})
		}
		if len(pts) == 0 {
			continue
		}
		col := plotutil.Color(s.color)
		switch s.style {
		case "points":
			sc, err := plotter.NewScatter(pts)
			if err != nil {
				return nil, err
			}
			sc.GlyphStyle.Color, sc.GlyphStyle.Shape, sc.GlyphStyle.Radius = col, draw.CircleGlyph{}, vg.Points(2.5)
			p.Add(sc)
			if s.name != "" {
				p.Legend.Add(s.name, sc)
			}
		default:
			l, err := plotter.NewLine(pts)
			if err != nil {
				return nil, err
			}
			l.LineStyle.Color, l.LineStyle.Width = col, vg.Points(1.2)
			if s.style == "dashed" {
				l.LineStyle.Dashes = []vg.Length{vg.Points(4), vg.Points(3)}
			}
			p.Add(l)
			thumbs := []plot.Thumbnailer{l}
			if s.style == "linepoints" {
				sc, err := plotter.NewScatter(pts)
				if err != nil {
					return nil, err
				}
				sc.GlyphStyle.Color, sc.GlyphStyle.Radius = col, vg.Points(2)
				p.Add(sc)
				thumbs = append(thumbs, sc)
			}
			if s.name != "" {
				p.Legend.Add(s.name, thumbs...)
			}
		}
	}
	return p, nil
}

// save adds name.png and name.svg to o.
func (f figure) save(o *outputs, name string) error {
	p, err := f.build()
	if err != nil {
		return fmt.Errorf("plot %s: %w", name, err)
	}
	for _, ext := range []string{"png", "svg"} {
		w, err := p.WriterTo(8*vg.Inch, 5.5*vg.Inch, ext)
		if err != nil {
			return fmt.Errorf("plot %s: %w", name, err)
		}
		o.add(name+"."+ext, func(out io.Writer) error { _, err := w.WriteTo(out); return err })
	}
	return nil
}
