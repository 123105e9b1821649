// Package fit holds the line fits the benchmarks and experiments use to
// turn timings into growth rates: the slope of log(time) against log(n).
package fit

import (
	"math"
	"slices"
)

// Line fits y = a + b x by least squares and returns a and b (NaN for no
// points; slope 0 when every x is equal).
func Line(x, y []float64) (a, b float64) {
	n := float64(len(x))
	if len(x) == 0 {
		return math.NaN(), math.NaN()
	}
	var sx, sy, sxx, sxy float64
	for i := range x {
		sx += x[i]
		sy += y[i]
		sxx += x[i] * x[i]
		sxy += x[i] * y[i]
	}
	den := n*sxx - sx*sx
	if den == 0 {
		return sy / n, 0
	}
	b = (n*sxy - sx*sy) / den
	return (sy - b*sx) / n, b
}

// LogLogSlope is the least-squares slope of log y against log x: the
// exponent p of y ~ x^p. It is NaN for fewer than two points.
func LogLogSlope(x, y []float64) float64 {
	if len(x) < 2 {
		return math.NaN()
	}
	lx, ly := logs(x), logs(y)
	_, b := Line(lx, ly)
	return b
}

// TheilSenLogLog is the Theil-Sen slope of log y against log x, the median
// of the slopes between every pair of points: unlike least squares, one
// timing slowed by other load on the machine does not move it. It is NaN
// for fewer than two points with distinct x.
func TheilSenLogLog(x, y []float64) float64 {
	lx, ly := logs(x), logs(y)
	var slopes []float64
	for i := range lx {
		for j := i + 1; j < len(lx); j++ {
			if dx := lx[j] - lx[i]; dx != 0 {
				slopes = append(slopes, (ly[j]-ly[i])/dx)
			}
		}
	}
	return Median(slopes)
}

// Median returns the median of x (NaN for none), leaving x unchanged.
func Median(x []float64) float64 {
	if len(x) == 0 {
		return math.NaN()
	}
	y := slices.Clone(x)
	slices.Sort(y)
	if len(y)%2 == 1 {
		return y[len(y)/2]
	}
	return (y[len(y)/2-1] + y[len(y)/2]) / 2
}

func logs(x []float64) []float64 {
	l := make([]float64, len(x))
	for i, v := range x {
		l[i] = math.Log(v)
	}
	return l
}
