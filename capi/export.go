//go:build cgo && fastattn_capi

package main

/*
#include <stdint.h>
#include <stdlib.h>

// fa_array is a C-contiguous array owned by the caller.
typedef struct {
	void *data;
	const int64_t *shape;
	int32_t rank;
	int32_t dtype; // 1 float32, 2 float64, 3 bool, 4 int64
} fa_array;
*/
import "C"

import "unsafe"

// goArray converts a C array descriptor; nil stays nil.
func goArray(a *C.fa_array) *array {
	if a == nil {
		return nil
	}
	shape := make([]int, int(a.rank))
	if a.rank > 0 {
		for i, s := range unsafe.Slice((*int64)(unsafe.Pointer(a.shape)), int(a.rank)) {
			shape[i] = int(s)
		}
	}
	return &array{data: a.data, shape: shape, dtype: dtype(a.dtype)}
}

func mustArray(a *C.fa_array, name string) (array, error) {
	if g := goArray(a); g != nil {
		return *g, nil
	}
	return array{}, invalidf("%s is missing", name)
}

// finish stores err's message (C-allocated, freed with fastattn_free) and
// returns its status.
func finish(err error, errOut **C.char) C.int {
	if err != nil && errOut != nil {
		*errOut = C.CString(err.Error())
	}
	return C.int(status(err))
}

func inputsOf(q, k, v *C.fa_array, opts *C.char, keyLengths, sinks, mask *C.fa_array) (inputs, error) {
	var in inputs
	var err error
	if in.q, err = mustArray(q, "Q"); err != nil {
		return in, err
	}
	if in.k, err = mustArray(k, "K"); err != nil {
		return in, err
	}
	if in.v, err = mustArray(v, "V"); err != nil {
		return in, err
	}
	if opts != nil {
		in.opts = C.GoString(opts)
	}
	in.keyLengths, in.sinks, in.mask = goArray(keyLengths), goArray(sinks), goArray(mask)
	return in, nil
}

// fastattn_attend computes attention of q, k, v into out and lse. Options
// is a JSON object of fastattn.Options fields (NULL for defaults);
// keyLengths (int64), sinks (float64) and mask (bool or of Q's dtype) may
// be NULL. On success *report receives the report as JSON (pass NULL when
// it is not needed: exact attention then writes into out and lse directly);
// on failure *err receives the message. Both are freed with fastattn_free.
//
//export fastattn_attend
func fastattn_attend(q, k, v *C.fa_array, opts *C.char, keyLengths, sinks, mask *C.fa_array, out, lse *C.fa_array, report, errOut **C.char) C.int {
	var err error
	func() {
		defer guard(&err)
		var in inputs
		if in, err = inputsOf(q, k, v, opts, keyLengths, sinks, mask); err != nil {
			return
		}
		var o, l array
		if o, err = mustArray(out, "out"); err != nil {
			return
		}
		if l, err = mustArray(lse, "lse"); err != nil {
			return
		}
		var rep []byte
		if rep, err = attend(in, o, l, report != nil); err == nil && report != nil {
			*report = C.CString(string(rep))
		}
	}()
	return finish(err, errOut)
}

// fastattn_gradient computes dQ, dK and dV given the forward's out, lse and
// report (JSON, as fastattn_attend returned it) and dout, the loss gradient
// with respect to out; with sinks, dsinks (float64, one per sink) receives
// their gradient unless it is NULL.
//
//export fastattn_gradient
func fastattn_gradient(q, k, v *C.fa_array, opts *C.char, keyLengths, sinks, mask *C.fa_array, out, lse *C.fa_array, forwardReport *C.char, dout, dq, dk, dv, dsinks *C.fa_array, report, errOut **C.char) C.int {
	var err error
	func() {
		defer guard(&err)
		var in inputs
		if in, err = inputsOf(q, k, v, opts, keyLengths, sinks, mask); err != nil {
			return
		}
		var arrs [6]array
		for i, a := range []struct {
			p    *C.fa_array
			name string
		}{{out, "out"}, {lse, "lse"}, {dout, "dout"}, {dq, "dq"}, {dk, "dk"}, {dv, "dv"}} {
			if arrs[i], err = mustArray(a.p, a.name); err != nil {
				return
			}
		}
		fwd := "{}"
		if forwardReport != nil {
			fwd = C.GoString(forwardReport)
		}
		var rep []byte
		if rep, err = gradient(in, arrs[0], arrs[1], fwd, arrs[2], arrs[3], arrs[4], arrs[5], goArray(dsinks)); err == nil && report != nil {
			*report = C.CString(string(rep))
		}
	}()
	return finish(err, errOut)
}

// fastattn_merge merges n results over disjoint key sets, given as arrays
// of n outputs and n log-sum-exps, into out and lse.
//
//export fastattn_merge
func fastattn_merge(n C.int32_t, outs, lses *C.fa_array, out, lse *C.fa_array, errOut **C.char) C.int {
	var err error
	func() {
		defer guard(&err)
		if n < 0 || (n > 0 && (outs == nil || lses == nil)) {
			err = invalidf("merge: bad part count %d", int(n))
			return
		}
		var os, ls []array
		if n > 0 {
			for i, a := range unsafe.Slice(outs, int(n)) {
				os = append(os, *goArray(&a))
				ls = append(ls, *goArray(&unsafe.Slice(lses, int(n))[i]))
			}
		}
		var o, l array
		if o, err = mustArray(out, "out"); err != nil {
			return
		}
		if l, err = mustArray(lse, "lse"); err != nil {
			return
		}
		err = merge(os, ls, o, l)
	}()
	return finish(err, errOut)
}

// fastattn_info returns a JSON object describing the library (ABI version,
// methods, differentiable methods); free it with fastattn_free.
//
//export fastattn_info
func fastattn_info() *C.char { return C.CString(string(info())) }

// fastattn_go_total_alloc returns the bytes the Go heap has allocated since
// the library loaded (a diagnostic: the tests check inputs are not copied).
//
//export fastattn_go_total_alloc
func fastattn_go_total_alloc() C.int64_t { return C.int64_t(totalAlloc()) }

// fastattn_free frees a string returned by this library.
//
//export fastattn_free
func fastattn_free(s *C.char) { C.free(unsafe.Pointer(s)) }
