package main

// The layers of the model, each as a forward function and the backward
// function that undoes it, in the order the model uses them. Activations
// are row-major float32 matrices with one row per token (N = batch * ctx).

import (
	"context"
	"math"
	"runtime"

	"github.com/fastattn/fastattn/internal/kernels"
	"github.com/fastattn/fastattn/internal/parallel"
)

// parallelFor runs fn over [0, n) split into one contiguous range per
// worker; ranges are multiples of align (except the last). The ranges run
// on the library's pooled workers (the calling goroutine takes one), which
// stay awake for a short while between the model's many short steps.
func parallelFor(n, align int, fn func(lo, hi int)) {
	w := runtime.GOMAXPROCS(0)
	chunk := (n + w - 1) / w
	chunk = (chunk + align - 1) / align * align
	if w == 1 || n <= align || chunk >= n {
		fn(0, n)
		return
	}
	parts := (n + chunk - 1) / chunk
	parallel.For(context.Background(), parts, parts, func(i int) { fn(i*chunk, min((i+1)*chunk, n)) })
}

// matmulForward sets out = in W^T: in is rows x cin, W is cout x cin (the
// PyTorch nn.Linear layout), out is rows x cout. The rows are split
// between the cores; each part is one GEMM of the project's kernels.
func matmulForward(out, in, w []float32, rows, cin, cout int) {
	parallelFor(rows, 16, func(lo, hi int) {
		kernels.GemmNT32(hi-lo, cout, cin, in[lo*cin:], cin, w, cin, out[lo*cout:], cout)
	})
}

// matmulBackward adds dIn += dOut W and dW += dOut^T in. dIn may be nil
// (the input needs no gradient). The weight gradient is a product over
// the token dimension, read transposed in place (a TN GEMM).
func matmulBackward(dIn, dW, dOut, in, w []float32, rows, cin, cout int) {
	if dIn != nil {
		parallelFor(rows, 16, func(lo, hi int) {
			kernels.GemmNN32(hi-lo, cin, cout, dOut[lo*cout:], cout, w, cin, dIn[lo*cin:], cin)
		})
	}
	parallelFor(cout, 16, func(lo, hi int) {
		kernels.GemmTN32(hi-lo, cin, rows, dOut[lo:], cout, in, cin, dW[lo*cin:], cin)
	})
}

const rmsEps = 1e-5

// rmsnormForward sets out = x / rms(x) * gain row by row and keeps each
// row's 1/rms for the backward pass.
func rmsnormForward(out, rstd, x, gain []float32, rows, c int) {
	for i := range rows {
		xi := x[i*c : (i+1)*c]
		var ss float64
		for _, v := range xi {
			ss += float64(v) * float64(v)
		}
		r := float32(1 / math.Sqrt(ss/float64(c)+rmsEps))
		rstd[i] = r
		oi := out[i*c : (i+1)*c]
		for j, v := range xi {
			oi[j] = v * r * gain[j]
		}
	}
}

// rmsnormBackward adds the gradients of x and gain. With u = dOut * gain,
// y = x r and r = (mean x^2 + eps)^(-1/2):
// dx = r u - x r^3 mean(u x).
func rmsnormBackward(dx, dGain, dOut, x, gain, rstd []float32, rows, c int) {
	for i := range rows {
		xi, di := x[i*c:(i+1)*c], dOut[i*c:(i+1)*c]
		r := rstd[i]
		var dot float64
		for j := range c {
			dGain[j] += di[j] * xi[j] * r
			dot += float64(di[j] * gain[j] * xi[j])
		}
		k := float32(dot/float64(c)) * r * r * r
		dxi := dx[i*c : (i+1)*c]
		for j := range c {
			dxi[j] += r*di[j]*gain[j] - k*xi[j]
		}
	}
}

// rope holds the rotary embedding's cos and sin tables: pair (j, j+d/2)
// of a head vector at position t is rotated by t * base^(-2j/d) (the
// GPT-NeoX / Llama half-split layout).
type rope struct {
	d        int
	base     float64
	cos, sin []float32 // positions x d/2
}

func newRope(ctx, d int, base float64) *rope {
	r := &rope{d: d, base: base}
	r.ensure(ctx)
	return r
}

// ensure extends the tables to positions 0..n-1 (decoding with a key/value
// cache goes past the training context; only relative positions matter).
func (r *rope) ensure(n int) {
	h := r.d / 2
	for t := len(r.cos) / h; t < n; t++ {
		for j := range h {
			a := float64(t) * math.Pow(r.base, -2*float64(j)/float64(r.d))
			r.cos, r.sin = append(r.cos, float32(math.Cos(a))), append(r.sin, float32(math.Sin(a)))
		}
	}
}

// rotate applies the rotation of position t to v in place; inverse
// rotates the other way, which is also the backward pass (a rotation's
// transpose is its inverse).
func (r *rope) rotate(v []float32, t int, inverse bool) {
	h := r.d / 2
	c, s := r.cos[t*h:(t+1)*h], r.sin[t*h:(t+1)*h]
	for j := range h {
		x1, x2 := v[j], v[j+h]
		sn := s[j]
		if inverse {
			sn = -sn
		}
		v[j], v[j+h] = x1*c[j]-x2*sn, x1*sn+x2*c[j]
	}
}

// splitHeads copies the heads of x (batch*ctx rows of heads*d, as a
// linear layer writes them) into the (batch, heads, ctx, d) layout of
// attention, applying QK-normalization (v / |v|, keeping |v| in norms) and
// the rotary embedding (token t at position pos0+t) when asked.
func splitHeads(dst, x []float32, batch, ctx, heads, d int, rp *rope, pos0 int, norms []float32) {
	for b := range batch {
		for t := range ctx {
			row := x[(b*ctx+t)*heads*d:]
			for h := range heads {
				o := dst[((b*heads+h)*ctx+t)*d : ((b*heads+h)*ctx+t+1)*d]
				copy(o, row[h*d:(h+1)*d])
				if norms != nil {
					var ss float64
					for _, v := range o {
						ss += float64(v) * float64(v)
					}
					n := float32(math.Sqrt(ss + 1e-12))
					norms[(b*heads+h)*ctx+t] = n
					for j := range o {
						o[j] /= n
					}
				}
				if rp != nil {
					rp.rotate(o, pos0+t, false)
				}
			}
		}
	}
}

// mergeHeads is splitHeads's backward pass: it takes the gradient in the
// attention layout, undoes the rotation and the normalization, and writes
// the gradient of the linear layer's output. normed holds the forward's
// normalized, rotated vectors (needed by the normalization's gradient).
func mergeHeads(dx, g []float32, batch, ctx, heads, d int, rp *rope, norms, normed []float32) {
	tmp, y := make([]float32, d), make([]float32, d)
	for b := range batch {
		for t := range ctx {
			row := dx[(b*ctx+t)*heads*d:]
			for h := range heads {
				i := ((b*heads+h)*ctx + t) * d
				copy(tmp, g[i:i+d])
				if rp != nil {
					rp.rotate(tmp, t, true)
				}
				if norms != nil {
					// y = v/|v|: dv = (dy - y (y.dy)) / |v|, y unrotated.
					copy(y, normed[i:i+d])
					if rp != nil {
						rp.rotate(y, t, true)
					}
					var dot float32
					for j := range d {
						dot += y[j] * tmp[j]
					}
					n := norms[(b*heads+h)*ctx+t]
					for j := range d {
						tmp[j] = (tmp[j] - y[j]*dot) / n
					}
				}
				copy(row[h*d:(h+1)*d], tmp)
			}
		}
	}
}

// swigluForward sets out = silu(a) * b (Shazeer's SwiGLU, as in Llama).
func swigluForward(out, a, b []float32) {
	sigmoidBlocks(a, func(i0 int, s []float32) {
		for j, sj := range s {
			out[i0+j] = a[i0+j] * sj * b[i0+j]
		}
	})
}

// swigluBackward sets da and db from dOut.
func swigluBackward(da, db, dOut, a, b []float32) {
	sigmoidBlocks(a, func(i0 int, s []float32) {
		for j, sj := range s {
			i := i0 + j
			da[i] = dOut[i] * b[i] * sj * (1 + a[i]*(1-sj))
			db[i] = dOut[i] * a[i] * sj
		}
	})
}

// sigmoidBlock is how many sigmoids sigmoidBlocks computes at a time (a
// buffer on the stack).
const sigmoidBlock = 256

// sigmoidBlocks calls fn(i0, s) for consecutive blocks of x, in parallel,
// with s[j] the sigmoid of x[i0+j].
func sigmoidBlocks(x []float32, fn func(i0 int, s []float32)) {
	parallelFor(len(x), 64, func(lo, hi int) {
		var s [sigmoidBlock]float32
		for i0 := lo; i0 < hi; i0 += sigmoidBlock {
			n := min(sigmoidBlock, hi-i0)
			sigmoid(s[:n], x[i0:i0+n])
			fn(i0, s[:n])
		}
	})
}

// sigmoid sets s[i] = 1 / (1 + exp(-x[i])). The exponentials go through
// the project's vector kernel, which wants arguments <= 0: with
// e = exp(-|x|), the sigmoid is 1 / (1 + e) for x >= 0 and e / (1 + e)
// below, so nothing overflows. The sign picks the numerator through bit
// masks: a branch on it is mispredicted half the time on real activations.
func sigmoid(s, x []float32) {
	for i, v := range x {
		s[i] = math.Float32frombits(math.Float32bits(v) | 1<<31) // -|v|
	}
	kernels.ExpShiftSum32(s, 1, 0)
	one := math.Float32bits(1)
	for i, e := range s {
		neg := uint32(int32(math.Float32bits(x[i])) >> 31) // all ones when x < 0
		s[i] = math.Float32frombits(one&^neg|math.Float32bits(e)&neg) / (1 + e)
	}
}

// crossEntropy turns logits (rows x v) into probabilities in place and
// returns the mean negative log-likelihood of the targets in nats.
func crossEntropy(logits []float32, targets []byte, rows, v int) float64 {
	losses := make([]float64, rows)
	parallelFor(rows, 1, func(lo, hi int) {
		for i := lo; i < hi; i++ {
			l := logits[i*v : (i+1)*v]
			m := kernels.Max32(l)
			s := kernels.ExpShiftSum32(l, 1, m)
			for j := range l {
				l[j] /= s
			}
			losses[i] = -math.Log(math.Max(float64(l[targets[i]]), 1e-30))
		}
	})
	var sum float64
	for _, x := range losses {
		sum += x
	}
	return sum / float64(rows)
}

// crossEntropyBackward turns the probabilities into the gradient of the
// mean loss with respect to the logits: (p - onehot) / rows.
func crossEntropyBackward(probs []float32, targets []byte, rows, v int) {
	inv := 1 / float32(rows)
	for i := range rows {
		l := probs[i*v : (i+1)*v]
		l[targets[i]] -= 1
		for j := range l {
			l[j] *= inv
		}
	}
}
