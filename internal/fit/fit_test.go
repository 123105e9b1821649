package fit

import (
	"math"
	"testing"
)

func TestFits(t *testing.T) {
	a, b := Line([]float64{1, 2, 3, 4}, []float64{3, 5, 7, 9})
	if math.Abs(a-1) > 1e-12 || math.Abs(b-2) > 1e-12 {
		t.Errorf("Line: %g + %g x", a, b)
	}
	n := []float64{1024, 2048, 4096, 8192}
	sec := []float64{1, 4, 16, 64} // n^2
	if s := LogLogSlope(n, sec); math.Abs(s-2) > 1e-12 {
		t.Errorf("LogLogSlope: %g, want 2", s)
	}
	sec[1] *= 10 // one run slowed by load
	if s := TheilSenLogLog(n, sec); math.Abs(s-2) > 1e-12 {
		t.Errorf("TheilSenLogLog with one outlier: %g, want 2", s)
	}
	if s := LogLogSlope(n[:1], sec[:1]); !math.IsNaN(s) {
		t.Errorf("one point: slope %g, want NaN", s)
	}
	if m := Median([]float64{3, 1, 2, 10}); m != 2.5 {
		t.Errorf("Median: %g", m)
	}
}
