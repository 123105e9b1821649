package npyfile

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"codeberg.org/sbinet/npyio/npy"
)

// The testdata files were written by NumPy 1.24.2 (see the commit that added
// them); the reader must agree with NumPy on what they hold.
func TestReadNumPyFiles(t *testing.T) {
	a, err := Read("testdata/f32_2d.npy")
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(a.Shape, []int{2, 3}) || !slices.Equal(a.F32, []float32{0, 0.25, 0.5, 0.75, 1, 1.25}) || a.DType() != "float32" {
		t.Fatalf("f32_2d: %+v", a)
	}
	a, err = Read("testdata/f64_4d.npy")
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(a.Shape, []int{2, 3, 2, 2}) || len(a.F64) != 24 || a.F64[0] != -7.5 || a.F64[23] != 15.5 {
		t.Fatalf("f64_4d: %+v", a)
	}
	a, err = Read("testdata/f32_be.npy")
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(a.F32, []float32{0, 0.25, 0.5, 0.75, 1, 1.25}) {
		t.Fatalf("big-endian: %v", a.F32)
	}
	a, err = Read("testdata/f32_empty.npy")
	if err != nil || !slices.Equal(a.Shape, []int{0, 3}) || len(a.F32) != 0 {
		t.Fatalf("empty: %+v, %v", a, err)
	}
	if a, err := Read("testdata/f16.npy"); err != nil || a.DType() != "float16" || !slices.Equal(a.F16, []uint16{0, 0x3c00, 0x4000, 0x4200}) {
		t.Errorf("f16.npy: %+v, %v", a, err)
	}
	for _, name := range []string{"f32_fortran.npy", "i64.npy"} {
		if _, err := Read("testdata/" + name); !errors.Is(err, ErrFormat) {
			t.Errorf("%s: got %v, want ErrFormat", name, err)
		}
	}
}

func TestRoundTrip(t *testing.T) {
	dir := t.TempDir()
	for _, shape := range [][]int{{5}, {2, 3}, {2, 1, 3}, {1, 2, 3, 4}, {0, 4}} {
		n := 1
		for _, s := range shape {
			n *= s
		}
		f32 := make([]float32, n)
		f64 := make([]float64, n)
		for i := range n {
			f32[i] = float32(i) * 1.5
			f64[i] = -float64(i) / 3
		}
		for _, data := range []any{f32, f64} {
			path := filepath.Join(dir, "x.npy")
			if err := Write(path, shape, data); err != nil {
				t.Fatal(err)
			}
			got, err := Read(path)
			if err != nil {
				t.Fatalf("%v: %v", shape, err)
			}
			if !slices.Equal(got.Shape, shape) {
				t.Fatalf("shape %v read back as %v", shape, got.Shape)
			}
			// npyio itself must read what we wrote, header and all.
			f, _ := os.Open(path)
			r, err := npy.NewReader(f)
			if err != nil {
				t.Fatal(err)
			}
			f.Close()
			if !slices.Equal(r.Header.Descr.Shape, shape) && n > 0 {
				t.Fatalf("npyio reads shape %v, want %v", r.Header.Descr.Shape, shape)
			}
			switch d := data.(type) {
			case []float32:
				if !slices.Equal(got.F32, d) {
					t.Fatalf("float32 data differs")
				}
			case []float64:
				if !slices.Equal(got.F64, d) {
					t.Fatalf("float64 data differs")
				}
			}
		}
	}
}

func TestWriteIsAtomic(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "out.npy")
	if err := Write(path, []int{3}, []float32{1, 2}); err == nil {
		t.Fatal("shape/data mismatch accepted")
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 0 {
		t.Fatalf("failed write left files: %v", entries)
	}
	if err := Write(filepath.Join(dir, "missing", "out.npy"), []int{1}, []float32{1}); err == nil {
		t.Fatal("write into a missing directory succeeded")
	}
}

func corruptions(t testing.TB) map[string][]byte {
	var good bytes.Buffer
	if err := Encode(&good, []int{2, 3}, []float32{1, 2, 3, 4, 5, 6}); err != nil {
		t.Fatal(err)
	}
	g := good.Bytes()
	v2 := append([]byte{}, g...)
	v2[6] = 2 // version 2 reads a 4-byte length: now garbage
	hugeLen := append([]byte{}, g...)
	hugeLen[8], hugeLen[9] = 0xff, 0xff
	return map[string][]byte{
		"empty":          {},
		"magic only":     g[:6],
		"short header":   g[:20],
		"no data":        g[:len(g)-24],
		"truncated data": g[:len(g)-3],
		"trailing bytes": append(append([]byte{}, g...), 0, 0, 0, 0),
		"not npy":        []byte("hello, this is a text file and not an array"),
		"bad version":    v2,
		"huge header":    hugeLen,
		"bad dict":       bytes.Replace(g, []byte("'descr'"), []byte("'dexcr'"), 1),
		"bad shape":      bytes.Replace(g, []byte("(2, 3)"), []byte("(2, x)"), 1),
		"negative shape": bytes.Replace(g, []byte("(2, 3)"), []byte("(-2,3)"), 1),
		"int dtype":      bytes.Replace(g, []byte("<f4"), []byte("<i4"), 1),
	}
}

func TestRejectsCorruptFiles(t *testing.T) {
	for name, b := range corruptions(t) {
		if _, err := Decode(bytes.NewReader(b), int64(len(b))); !errors.Is(err, ErrFormat) {
			t.Errorf("%s: got %v, want ErrFormat", name, err)
		}
	}
}

// FuzzDecode feeds arbitrary bytes to the reader: it must never panic, and
// whatever it accepts must be self-consistent.
func FuzzDecode(f *testing.F) {
	for _, name := range []string{"f32_2d.npy", "f64_4d.npy", "f32_be.npy", "f32_fortran.npy", "i64.npy"} {
		b, err := os.ReadFile("testdata/" + name)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	for _, b := range corruptions(f) {
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		a, err := Decode(bytes.NewReader(b), int64(len(b)))
		if err != nil {
			return
		}
		n := 1
		for _, s := range a.Shape {
			n *= s
		}
		if len(a.F32)+len(a.F64) != n || (a.F32 == nil) == (a.F64 == nil) {
			t.Fatalf("accepted inconsistent array: shape %v, %d+%d values", a.Shape, len(a.F32), len(a.F64))
		}
	})
}

// TestSixteenBit round-trips float16 (<f2) and uint16 (<u2) arrays.
func TestSixteenBit(t *testing.T) {
	for _, data := range []any{Float16{0x3c00, 0xc000, 0x7c00}, []uint16{0x3f80, 1, 65535}} {
		var b bytes.Buffer
		if err := Encode(&b, []int{3}, data); err != nil {
			t.Fatal(err)
		}
		a, err := Decode(bytes.NewReader(b.Bytes()), int64(b.Len()))
		if err != nil {
			t.Fatal(err)
		}
		got := a.F16
		if _, ok := data.([]uint16); ok {
			got = a.U16
		}
		want := []uint16{0x3c00, 0xc000, 0x7c00}
		if _, ok := data.([]uint16); ok {
			want = []uint16{0x3f80, 1, 65535}
		}
		if len(got) != 3 || got[0] != want[0] || got[1] != want[1] || got[2] != want[2] || len(a.Shape) != 1 {
			t.Errorf("%T: read %v (%s), want %v", data, got, a.DType(), want)
		}
	}
}
