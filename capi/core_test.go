package main

import (
	"context"
	"encoding/json"
	"math"
	"math/rand/v2"
	"strings"
	"testing"
	"unsafe"

	"github.com/fastattn/fastattn"
	"github.com/fastattn/fastattn/attn"
)

// arrayOf describes Go memory as the C side would describe its own.
func arrayOf[T float32 | float64 | int64 | bool](data []T, shape ...int) array {
	var x T
	var dt dtype
	switch any(x).(type) {
	case float32:
		dt = float32Type
	case float64:
		dt = float64Type
	case int64:
		dt = int64Type
	case bool:
		dt = boolType
	}
	var p unsafe.Pointer
	if len(data) > 0 {
		p = unsafe.Pointer(&data[0])
	}
	return array{data: p, shape: shape, dtype: dt}
}

func randoms(r *rand.Rand, n int) []float64 {
	x := make([]float64, n)
	for i := range x {
		x[i] = r.NormFloat64()
	}
	return x
}

func TestAttendWritesIntoCallerMemory(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	q, k, v := randoms(r, 2*5*4), randoms(r, 2*7*4), randoms(r, 2*7*3)
	out, lse := make([]float64, 2*5*3), make([]float64, 2*5)
	lens := []int64{7, 3}
	in := inputs{
		q: arrayOf(q, 2, 5, 4), k: arrayOf(k, 2, 7, 4), v: arrayOf(v, 2, 7, 3),
		opts:   `{"Causal": true, "Scale": 0.5}`,
		extras: extras{keyLengths: ptr(arrayOf(lens, 2))},
	}
	// Without a report exact attention writes into out and lse directly;
	// with one, Attend's result is copied there. Both must agree with Attend.
	if _, err := attend(in, arrayOf(out, 2, 5, 3), arrayOf(lse, 2, 5), false); err != nil {
		t.Fatal(err)
	}
	direct := append([]float64(nil), out...)
	rep, err := attend(in, arrayOf(out, 2, 5, 3), arrayOf(lse, 2, 5), true)
	if err != nil {
		t.Fatal(err)
	}
	qt, _ := fastattn.NewTensor(q, 2, 5, 4)
	kt, _ := fastattn.NewTensor(k, 2, 7, 4)
	vt, _ := fastattn.NewTensor(v, 2, 7, 3)
	want, err := fastattn.Attend(context.Background(), qt, kt, vt, fastattn.Options{Causal: true, Scale: 0.5, KeyLengths: []int{7, 3}})
	if err != nil {
		t.Fatal(err)
	}
	for i := range out {
		if out[i] != want.Out.Data[i] || direct[i] != want.Out.Data[i] {
			t.Fatalf("out[%d] = %v (%v without a report), want %v", i, out[i], direct[i], want.Out.Data[i])
		}
	}
	for i := range lse {
		if lse[i] != want.LSE.Data[i] && !(math.IsInf(lse[i], -1) && math.IsInf(want.LSE.Data[i], -1)) {
			t.Fatalf("lse[%d] = %v, want %v", i, lse[i], want.LSE.Data[i])
		}
	}
	var got fastattn.Report
	if err := json.Unmarshal(rep, &got); err != nil || got.Method != "exact" || !got.Causal || got.Scale != 0.5 {
		t.Fatalf("report %s (%v)", rep, err)
	}

	// The gradient, from that forward result and its report.
	dout := randoms(r, len(out))
	dq, dk, dv := make([]float64, len(q)), make([]float64, len(k)), make([]float64, len(v))
	if _, err := gradient(in, arrayOf(out, 2, 5, 3), arrayOf(lse, 2, 5), string(rep), arrayOf(dout, 2, 5, 3),
		arrayOf(dq, 2, 5, 4), arrayOf(dk, 2, 7, 4), arrayOf(dv, 2, 7, 3), nil); err != nil {
		t.Fatal(err)
	}
	dt, _ := fastattn.NewTensor(dout, 2, 5, 3)
	g, err := fastattn.Gradient(context.Background(), qt, kt, vt, want, dt, fastattn.Options{Causal: true, Scale: 0.5, KeyLengths: []int{7, 3}})
	if err != nil {
		t.Fatal(err)
	}
	for i := range dk {
		if dk[i] != g.DK.Data[i] {
			t.Fatalf("dk[%d] = %v, want %v", i, dk[i], g.DK.Data[i])
		}
	}
}

func ptr[T any](x T) *T { return &x }

func TestStatuses(t *testing.T) {
	x := []float32{1, 2, 3, 4}
	a := arrayOf(x, 2, 2)
	out, lse := arrayOf(make([]float32, 4), 2, 2), arrayOf(make([]float64, 2), 2)
	for _, c := range []struct {
		name   string
		in     inputs
		out    array
		status int
		msg    string
	}{
		{"ok", inputs{q: a, k: a, v: a}, out, statusOK, ""},
		{"unknown option", inputs{q: a, k: a, v: a, opts: `{"Frobnicate": 1}`}, out, statusUnknownOpt, `no option "Frobnicate"`},
		{"bad json", inputs{q: a, k: a, v: a, opts: `{"Causal": 3}`}, out, statusInvalid, "bad options"},
		{"mixed dtypes", inputs{q: a, k: arrayOf([]float64{1, 2, 3, 4}, 2, 2), v: a}, out, statusInvalid, "K has dtype float64, want float32"},
		{"shape mismatch", inputs{q: a, k: arrayOf(x, 1, 4), v: a}, out, statusInvalid, "last dimension"},
		{"negative dim", inputs{q: arrayOf(x, -2, -2), k: a, v: a}, out, statusInvalid, "negative dimension"},
		{"missing data", inputs{q: array{shape: []int{2, 2}, dtype: float32Type}, k: a, v: a}, out, statusInvalid, "no data"},
		{"wrong out shape", inputs{q: a, k: a, v: a}, arrayOf(make([]float32, 4), 4), statusInvalid, "out has shape [4]"},
		{"unknown method", inputs{q: a, k: a, v: a, opts: `{"Method": "nope"}`}, out, statusInvalid, "unknown method"},
		{"declines", inputs{q: arrayOf([]float32{100, 100, 100, 100}, 2, 2), k: a, v: a, opts: `{"Method": "poly"}`}, out, statusUnsupported, "poly"},
	} {
		for _, report := range []bool{true, false} {
			_, err := attend(c.in, c.out, lse, report)
			if got := status(err); got != c.status {
				t.Errorf("%s (report %v): status %d (%v), want %d", c.name, report, got, err, c.status)
			}
			if err != nil && !strings.Contains(err.Error(), c.msg) {
				t.Errorf("%s (report %v): error %q does not mention %q", c.name, report, err, c.msg)
			}
		}
	}
}

func TestMerge(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	q, k, v := randoms(r, 3*2), randoms(r, 8*2), randoms(r, 8*2)
	part := func(lo, hi int) (array, array) {
		o, l := make([]float64, 3*2), make([]float64, 3)
		in := inputs{q: arrayOf(q, 3, 2), k: arrayOf(k[lo*2:hi*2], hi-lo, 2), v: arrayOf(v[lo*2:hi*2], hi-lo, 2)}
		if _, err := attend(in, arrayOf(o, 3, 2), arrayOf(l, 3), false); err != nil {
			t.Fatal(err)
		}
		return arrayOf(o, 3, 2), arrayOf(l, 3)
	}
	o1, l1 := part(0, 5)
	o2, l2 := part(5, 8)
	all, allLSE := part(0, 8)
	out, lse := make([]float64, 6), make([]float64, 3)
	if err := merge([]array{o1, o2}, []array{l1, l2}, arrayOf(out, 3, 2), arrayOf(lse, 3)); err != nil {
		t.Fatal(err)
	}
	want := unsafe.Slice((*float64)(all.data), 6)
	for i := range out {
		if math.Abs(out[i]-want[i]) > 1e-14 {
			t.Fatalf("merged out[%d] = %v, want %v", i, out[i], want[i])
		}
	}
	wantLSE := unsafe.Slice((*float64)(allLSE.data), 3)
	for i := range lse {
		if math.Abs(lse[i]-wantLSE[i]) > 1e-14 {
			t.Fatalf("merged lse[%d] = %v, want %v", i, lse[i], wantLSE[i])
		}
	}
	if err := merge([]array{o1}, []array{arrayOf(make([]float64, 2), 2)}, arrayOf(out, 3, 2), arrayOf(lse, 3)); status(err) != statusInvalid {
		t.Fatalf("mismatched log-sum-exp shape: %v", err)
	}
}

func TestInfo(t *testing.T) {
	var got struct {
		ABI     int      `json:"abi"`
		Methods []string `json:"methods"`
	}
	if err := json.Unmarshal(info(), &got); err != nil || got.ABI != abiVersion || len(got.Methods) == 0 {
		t.Fatalf("info %s: %v", info(), err)
	}
}

func TestAttendHalfKeysAndValues(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	f32 := func(n int) []float32 {
		x := make([]float32, n)
		for i := range x {
			x[i] = float32(r.NormFloat64())
		}
		return x
	}
	// bfloat16 bits: the upper half of a float32.
	bf16 := func(x []float32) []uint16 {
		b := make([]uint16, len(x))
		for i, v := range x {
			b[i] = uint16(math.Float32bits(v) >> 16)
		}
		return b
	}
	q, kb, vb := f32(3*4), bf16(f32(5*4)), bf16(f32(5*2))
	half := func(b []uint16, shape ...int) array {
		return array{data: unsafe.Pointer(&b[0]), shape: shape, dtype: bfloat16Type}
	}
	in := inputs{q: arrayOf(q, 3, 4), k: half(kb, 5, 4), v: half(vb, 5, 2), opts: `{"Causal": true}`}
	qt, _ := fastattn.NewTensor(q, 3, 4)
	want, err := fastattn.AttendHalfKV(context.Background(), qt,
		fastattn.HalfTensor{Data: kb, Shape: []int{5, 4}, Format: fastattn.BFloat16},
		fastattn.HalfTensor{Data: vb, Shape: []int{5, 2}, Format: fastattn.BFloat16}, fastattn.Options{Causal: true})
	if err != nil {
		t.Fatal(err)
	}
	colMax := make([]float64, 2)
	for i, b := range vb {
		colMax[i%2] = max(colMax[i%2], math.Abs(float64(attn.HalfToFloat32(attn.BFloat16, b))))
	}
	for _, report := range []bool{true, false} {
		out, lse := make([]float32, 3*2), make([]float64, 3)
		if _, err := attend(in, arrayOf(out, 3, 2), arrayOf(lse, 3), report); err != nil {
			t.Fatal(err)
		}
		// Without a report the call is AttendHalfKVInto, which reads the
		// 16-bit values in place; AttendHalfKV widens them first. The two
		// agree to the bit where AVX-512 kernels run, but on AVX2 they may
		// sum in another order: each is within the bound of the truth.
		for i := range out {
			if d := math.Abs(float64(out[i] - want.Out.Data[i])); d > 2*want.Report.ErrorBound*colMax[i%2] {
				t.Fatalf("report %v: out[%d] = %v, want %v (bound %g)", report, i, out[i], want.Out.Data[i], want.Report.ErrorBound)
			}
		}
	}
	in.q = arrayOf([]float64{1, 2, 3, 4}, 1, 4)
	if _, err := attend(in, arrayOf(make([]float32, 2), 1, 2), arrayOf(make([]float64, 1), 1), true); status(err) != statusInvalid || !strings.Contains(err.Error(), "Q must be float32") {
		t.Fatalf("float64 queries with bfloat16 keys: %v", err)
	}
}

func TestGuardTurnsAPanicIntoAnInternalError(t *testing.T) {
	var err error
	func() {
		defer guard(&err)
		var a []int
		_ = a[3]
	}()
	if status(err) != statusInternal || !strings.Contains(err.Error(), "internal error") {
		t.Fatalf("after a panic: %v (status %d)", err, status(err))
	}
}

// TestSetWorkerPoll checks fastattn_set_worker_poll's body: nanoseconds in
// and out, the previous setting returned, a negative one kept as 0.
func TestSetWorkerPoll(t *testing.T) {
	def := setWorkerPoll(3e6)
	defer setWorkerPoll(def)
	if def != 1e5 {
		t.Errorf("default poll %d ns, want 100000", def)
	}
	if prev := setWorkerPoll(-5); prev != 3e6 {
		t.Errorf("returned %d ns, want the 3000000 set before", prev)
	}
	if prev := setWorkerPoll(def); prev != 0 {
		t.Errorf("a negative poll was kept as %d ns, want 0", prev)
	}
}
