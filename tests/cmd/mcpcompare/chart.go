package main

import (
	"fmt"
	"slices"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/plotutil"
	"gonum.org/v1/plot/vg"

	"github.com/mcp-dev/mcp/tests/lab"
)

// chart draws goodput per receiver (mean) against loss at n receivers,
// one line per tool, for one setting. Cells that failed or delivered a
// wrong copy are left out of their line.
func chart(name, setting string, c *config, cells []*cell, n int) error {
	p := plot.New()
	title := "A: unshaped bridge"
	if setting == "B" {
		title = fmt.Sprintf("B: sender shaped to %.0f Mbit/s", c.shape/1e6)
	}
	p.Title.Text = fmt.Sprintf("%s, %d receivers, %s file", title, n, lab.HumanSize(c.size))
	p.X.Label.Text = "loss at every receiver (%)"
	p.Y.Label.Text = "goodput per receiver, mean (Mbit/s)"
	p.Y.Min = 0
	p.Add(plotter.NewGrid())
	var lines []any
	for _, t := range c.tools {
		var xys plotter.XYs
		for _, x := range cells {
			if x.tool == t && x.setting == setting && x.n == n && x.slow == 0 && x.ok() {
				xys = append(xys, plotter.XY{X: x.loss, Y: x.gpAvg})
			}
		}
		slices.SortFunc(xys, func(a, b plotter.XY) int {
			switch {
			case a.X < b.X:
				return -1
			case a.X > b.X:
				return 1
			}
			return 0
		})
		if len(xys) > 0 {
			lines = append(lines, t, xys)
		}
	}
	if len(lines) == 0 {
		return nil
	}
	if err := plotutil.AddLinePoints(p, lines...); err != nil {
		return err
	}
	p.Legend.Top = true
	return p.Save(7*vg.Inch, 4.5*vg.Inch, name)
}
