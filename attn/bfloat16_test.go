package attn

import (
	"math"
	"math/rand/v2"
	"testing"
)

// TestFloat32ToBFloat16 checks the rounding against its definition: of
// the two bfloat16 values around x, the nearer (by exact float64
// distances), the one with an even last bit on a tie; NaN stays NaN (quiet,
// its sign kept) and the largest float32 values round up to infinity.
func TestFloat32ToBFloat16(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	xs := []uint32{0, 0x80000000, 0x3f808000, 0x3f818000, 0x3f80ffff, 0x00000001, 0x807fffff,
		0x7f7fffff, 0xff7f8000, 0x7f800000, 0xff800000, 0x7fc00000, 0x7f800001, 0xffa00000}
	for range 100000 {
		xs = append(xs, r.Uint32())
	}
	for _, b := range xs {
		x := math.Float32frombits(b)
		got := Float32ToBFloat16(x)
		if f := Float32ToHalf(BFloat16, x); f != got {
			t.Fatalf("%#08x: Float32ToHalf gives %#04x, Float32ToBFloat16 %#04x", b, f, got)
		}
		if x != x {
			if got&0x7f80 != 0x7f80 || got&0x7f == 0 || got&0x40 == 0 || got>>15 != uint16(b>>31) {
				t.Fatalf("NaN %#08x became %#04x", b, got)
			}
			continue
		}
		down := uint16(b >> 16) // toward zero
		lo := float64(math.Float32frombits(uint32(down) << 16))
		up := float64(math.Float32frombits(uint32(down+1) << 16))
		if down&0x7fff == 0x7f7f { // the next value up is infinity
			up = math.Copysign(math.Ldexp(1, 128), float64(x))
		}
		want := down
		switch dl, du := math.Abs(float64(x)-lo), math.Abs(up-float64(x)); {
		case math.IsInf(float64(x), 0) || dl < du:
		case du < dl || down&1 == 1:
			want = down + 1
		}
		if got != want {
			t.Fatalf("%#08x (%g): got %#04x, want %#04x", b, x, got, want)
		}
	}
}
