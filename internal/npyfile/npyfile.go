// Package npyfile reads and writes the float32 and float64 .npy files the
// command line works with (and reads boolean ones, for masks).
//
// Reading goes through codeberg.org/sbinet/npyio, behind checks that turn
// every malformed file into an error: npyio trusts the header's length and
// shape (a corrupt header can make it panic or allocate gigabytes), so the
// header's bounds and the data size are verified against the file's size
// first. Writing formats the small header directly: npyio takes an N-D shape
// only from nested Go slices, which costs 28 s per 256 MiB.
package npyfile

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"strings"

	"codeberg.org/sbinet/npyio/npy"

	"github.com/fastattn/fastattn/internal/outfile"
)

// Array is a float32, float64, float16, uint16 or boolean array: exactly
// one of its slices is set.
type Array struct {
	Shape []int
	F32   []float32
	F64   []float64
	F16   []uint16 // a <f2 file: IEEE half-precision bits
	U16   []uint16 // a <u2 file (bfloat16 bits, as ml_dtypes users save them)
	Bool  []bool   // a |b1 file (a boolean mask)
}

// DType returns "float32", "float64", "float16", "uint16" or "bool".
func (a Array) DType() string {
	switch {
	case a.F64 != nil:
		return "float64"
	case a.F16 != nil:
		return "float16"
	case a.U16 != nil:
		return "uint16"
	case a.Bool != nil:
		return "bool"
	}
	return "float32"
}

// Float16 marks []uint16 data as IEEE half-precision bits for Encode
// (written as <f2); plain []uint16 is written as <u2.
type Float16 []uint16

// maxHeaderLen bounds the header dictionary; NumPy's are a few hundred bytes.
const maxHeaderLen = 1 << 16

// ErrFormat is wrapped by every error about a file's contents.
var ErrFormat = errors.New("not a usable .npy file")

// Read reads a float32 or float64 .npy file.
func Read(path string) (Array, error) {
	f, err := os.Open(path)
	if err != nil {
		return Array{}, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return Array{}, err
	}
	if st.IsDir() {
		return Array{}, fmt.Errorf("%s is a directory, not a .npy file", path)
	}
	a, err := Decode(bufio.NewReaderSize(f, 1<<20), st.Size())
	if err != nil {
		return Array{}, fmt.Errorf("%s: %w", path, err)
	}
	return a, nil
}

// Decode reads a .npy stream of exactly size bytes.
func Decode(r io.Reader, size int64) (a Array, err error) {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: %s", ErrFormat, fmt.Sprintf(format, args...))
	}
	// Verify the preamble before npyio sees it.
	pre := make([]byte, 12)
	if _, err := io.ReadFull(r, pre[:10]); err != nil {
		return Array{}, bad("file is too short for a .npy header (%d bytes)", size)
	}
	if !bytes.Equal(pre[:6], npy.Magic[:]) {
		return Array{}, bad("missing the \\x93NUMPY magic string; save arrays with numpy.save")
	}
	var hdrLen, preLen int64
	switch pre[6] {
	case 1:
		hdrLen, preLen = int64(binary.LittleEndian.Uint16(pre[8:10])), 10
	case 2:
		if _, err := io.ReadFull(r, pre[10:12]); err != nil {
			return Array{}, bad("truncated header")
		}
		hdrLen, preLen = int64(binary.LittleEndian.Uint32(pre[8:12])), 12
	default:
		return Array{}, bad("unsupported .npy format version %d.%d", pre[6], pre[7])
	}
	if hdrLen > maxHeaderLen || preLen+hdrLen > size {
		return Array{}, bad("header length %d does not fit in a %d-byte file", hdrLen, size)
	}
	hdr := make([]byte, hdrLen)
	if _, err := io.ReadFull(r, hdr); err != nil {
		return Array{}, bad("truncated header")
	}
	if !bytes.HasSuffix(hdr, []byte("\n")) || !bytes.HasPrefix(bytes.TrimSpace(hdr), []byte("{")) {
		return Array{}, bad("malformed header dictionary")
	}
	// npyio panics on some malformed headers; report those as bad files.
	defer func() {
		if p := recover(); p != nil {
			err = bad("malformed header (%v)", p)
		}
	}()
	rd, err := npy.NewReader(io.MultiReader(bytes.NewReader(pre[:preLen]), bytes.NewReader(hdr), r))
	if err != nil {
		return Array{}, bad("%v", err)
	}
	h := rd.Header.Descr
	if h.Fortran {
		return Array{}, bad("array is in Fortran (column-major) order; save numpy.ascontiguousarray(x) instead")
	}
	var esize int64
	typ := strings.Trim(h.Type, "'\"")
	half := false
	switch strings.TrimLeft(typ, "<>|=") {
	case "f4":
		esize = 4
	case "f8":
		esize = 8
	case "b1":
		esize = 1
	case "f2", "u2":
		esize, half = 2, true
		if strings.HasPrefix(typ, ">") {
			return Array{}, bad("dtype %q is big-endian; save x.astype('<%s')", h.Type, typ[1:])
		}
	default:
		return Array{}, bad("dtype %q is not float32, float64, float16 or bool; convert with x.astype(numpy.float32)", h.Type)
	}
	n := int64(1)
	for _, s := range h.Shape {
		if s < 0 || (s > 0 && n > math.MaxInt64/8/int64(s)) {
			return Array{}, bad("invalid shape %v", h.Shape)
		}
		n *= int64(s)
	}
	if data := size - preLen - hdrLen; data != n*esize {
		return Array{}, bad("shape %v of %s needs %d data bytes but the file has %d (truncated or padded file)", h.Shape, h.Type, n*esize, data)
	}
	a.Shape = append([]int{}, h.Shape...)
	if half {
		// npyio has no float16: the data follows the header in r.
		raw := make([]byte, 2*n)
		if _, err := io.ReadFull(r, raw); err != nil {
			return Array{}, bad("reading data: %v", err)
		}
		x := make([]uint16, n)
		for i := range x {
			x[i] = binary.LittleEndian.Uint16(raw[2*i:])
		}
		if strings.HasSuffix(typ, "f2") {
			a.F16 = x
		} else {
			a.U16 = x
		}
		return a, nil
	}
	switch esize {
	case 1:
		a.Bool = make([]bool, 0, n)
		err = rd.Read(&a.Bool)
	case 4:
		a.F32 = make([]float32, 0, n)
		err = rd.Read(&a.F32)
	default:
		a.F64 = make([]float64, 0, n)
		err = rd.Read(&a.F64)
	}
	if err != nil && !(errors.Is(err, io.EOF) && n == 0) {
		return Array{}, bad("reading data: %v", err)
	}
	if a.F32 == nil && a.F64 == nil && a.Bool == nil { // an empty array read as nil
		switch esize {
		case 1:
			a.Bool = []bool{}
		case 4:
			a.F32 = []float32{}
		default:
			a.F64 = []float64{}
		}
	}
	return a, nil
}

// Encode writes a little-endian, C-order .npy stream (format version 1.0).
// data must be []float32 or []float64 with prod(shape) elements.
func Encode(w io.Writer, shape []int, data any) error {
	var descr string
	var count int
	switch d := data.(type) {
	case []float32:
		descr, count = "<f4", len(d)
	case []float64:
		descr, count = "<f8", len(d)
	case Float16:
		descr, count = "<f2", len(d)
	case []uint16:
		descr, count = "<u2", len(d)
	default:
		return fmt.Errorf("npyfile: cannot encode %T", data)
	}
	n := 1
	for _, s := range shape {
		n *= s
	}
	if n != count {
		return fmt.Errorf("npyfile: shape %v needs %d values, have %d", shape, n, count)
	}
	dims := make([]string, len(shape))
	for i, s := range shape {
		dims[i] = fmt.Sprint(s)
	}
	tuple := strings.Join(dims, ", ")
	if len(shape) == 1 {
		tuple += ","
	}
	dict := fmt.Sprintf("{'descr': '%s', 'fortran_order': False, 'shape': (%s), }", descr, tuple)
	// Pad with spaces so the data starts on a 64-byte boundary, as NumPy does.
	total := 10 + len(dict) + 1
	pad := (64 - total%64) % 64
	hdr := dict + strings.Repeat(" ", pad) + "\n"
	if len(hdr) > math.MaxUint16 {
		return fmt.Errorf("npyfile: header too long for shape %v", shape)
	}
	bw := bufio.NewWriterSize(w, 1<<20)
	bw.Write(npy.Magic[:])
	bw.Write([]byte{1, 0})
	binary.Write(bw, binary.LittleEndian, uint16(len(hdr)))
	bw.WriteString(hdr)
	// Convert in chunks: one Write per element would dominate large outputs.
	const chunk = 8192
	buf := make([]byte, 0, 8*chunk)
	switch d := data.(type) {
	case []float32:
		for len(d) > 0 {
			buf = buf[:0]
			for _, v := range d[:min(chunk, len(d))] {
				buf = binary.LittleEndian.AppendUint32(buf, math.Float32bits(v))
			}
			bw.Write(buf)
			d = d[min(chunk, len(d)):]
		}
	case []float64:
		for len(d) > 0 {
			buf = buf[:0]
			for _, v := range d[:min(chunk, len(d))] {
				buf = binary.LittleEndian.AppendUint64(buf, math.Float64bits(v))
			}
			bw.Write(buf)
			d = d[min(chunk, len(d)):]
		}
	case Float16:
		write16(bw, d, buf)
	case []uint16:
		write16(bw, d, buf)
	}
	return bw.Flush()
}

func write16(bw *bufio.Writer, d []uint16, buf []byte) {
	const chunk = 8192
	for len(d) > 0 {
		buf = buf[:0]
		for _, v := range d[:min(chunk, len(d))] {
			buf = binary.LittleEndian.AppendUint16(buf, v)
		}
		bw.Write(buf)
		d = d[min(chunk, len(d)):]
	}
}

// Write writes a .npy file atomically: to a temporary file beside path,
// renamed over path only once complete, so a failure never leaves a partial
// output file.
func Write(path string, shape []int, data any) error {
	return WriteAtomic(path, func(w io.Writer) error { return Encode(w, shape, data) })
}

// WriteAtomic writes path through fill, via a temporary file in the same
// directory renamed into place on success (package outfile: a symbolic link
// is written through, not replaced).
func WriteAtomic(path string, fill func(io.Writer) error) error {
	return outfile.Write(path, fill)
}
