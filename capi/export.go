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
	int32_t dtype; // 1 float32, 2 float64, 3 bool, 4 int64, 5 float16, 6 bfloat16 (as bits)
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

// mustArrays converts required array descriptors, naming a missing one.
func mustArrays(ps []*C.fa_array, names ...string) ([]array, error) {
	out := make([]array, len(ps))
	for i, p := range ps {
		g := goArray(p)
		if g == nil {
			return nil, invalidf("%s is missing", names[i])
		}
		out[i] = *g
	}
	return out, nil
}

// call runs f, turning a panic into an error, and returns its status;
// the error's message (C-allocated, freed with fastattn_free) goes to
// *errOut.
func call(errOut **C.char, f func() error) C.int {
	var err error
	func() {
		defer guard(&err)
		err = f()
	}()
	if err != nil && errOut != nil {
		*errOut = C.CString(err.Error())
	}
	return C.int(status(err))
}

func inputsOf(q, k, v *C.fa_array, opts *C.char, keyLengths, sinks, mask *C.fa_array) (inputs, error) {
	var in inputs
	qkv, err := mustArrays([]*C.fa_array{q, k, v}, "Q", "K", "V")
	if err != nil {
		return in, err
	}
	in.q, in.k, in.v = qkv[0], qkv[1], qkv[2]
	if opts != nil {
		in.opts = C.GoString(opts)
	}
	in.keyLengths, in.sinks, in.mask = goArray(keyLengths), goArray(sinks), goArray(mask)
	return in, nil
}

// fastattn_attend computes attention of q, k, v into out and lse (k and v
// may be float16 or bfloat16 with q and out float32). Options
// is a JSON object of fastattn.Options fields (NULL for defaults);
// keyLengths (int64), sinks (float64) and mask (bool or of Q's dtype) may
// be NULL. On success *report receives the report as JSON (pass NULL when
// it is not needed: exact attention then writes into out and lse directly);
// on failure *err receives the message. Both are freed with fastattn_free.
//
//export fastattn_attend
func fastattn_attend(q, k, v *C.fa_array, opts *C.char, keyLengths, sinks, mask *C.fa_array, out, lse *C.fa_array, report, errOut **C.char) C.int {
	return call(errOut, func() error {
		in, err := inputsOf(q, k, v, opts, keyLengths, sinks, mask)
		if err != nil {
			return err
		}
		ol, err := mustArrays([]*C.fa_array{out, lse}, "out", "lse")
		if err != nil {
			return err
		}
		rep, err := attend(in, ol[0], ol[1], report != nil)
		if err == nil && report != nil {
			*report = C.CString(string(rep))
		}
		return err
	})
}

// fastattn_gradient computes dQ, dK and dV given the forward's out, lse and
// report (JSON, as fastattn_attend returned it) and dout, the loss gradient
// with respect to out; with sinks, dsinks (float64, one per sink) receives
// their gradient unless it is NULL.
//
//export fastattn_gradient
func fastattn_gradient(q, k, v *C.fa_array, opts *C.char, keyLengths, sinks, mask *C.fa_array, out, lse *C.fa_array, forwardReport *C.char, dout, dq, dk, dv, dsinks *C.fa_array, report, errOut **C.char) C.int {
	return call(errOut, func() error {
		in, err := inputsOf(q, k, v, opts, keyLengths, sinks, mask)
		if err != nil {
			return err
		}
		a, err := mustArrays([]*C.fa_array{out, lse, dout, dq, dk, dv}, "out", "lse", "dout", "dq", "dk", "dv")
		if err != nil {
			return err
		}
		fwd := "{}"
		if forwardReport != nil {
			fwd = C.GoString(forwardReport)
		}
		rep, err := gradient(in, a[0], a[1], fwd, a[2], a[3], a[4], a[5], goArray(dsinks))
		if err == nil && report != nil {
			*report = C.CString(string(rep))
		}
		return err
	})
}

// fastattn_merge merges n results over disjoint key sets, given as arrays
// of n outputs and n log-sum-exps, into out and lse.
//
//export fastattn_merge
func fastattn_merge(n C.int32_t, outs, lses *C.fa_array, out, lse *C.fa_array, errOut **C.char) C.int {
	return call(errOut, func() error {
		if n < 0 || (n > 0 && (outs == nil || lses == nil)) {
			return invalidf("merge: bad part count %d", int(n))
		}
		var os, ls []array
		if n > 0 {
			for i := range int(n) {
				os = append(os, *goArray(&unsafe.Slice(outs, int(n))[i]))
				ls = append(ls, *goArray(&unsafe.Slice(lses, int(n))[i]))
			}
		}
		ol, err := mustArrays([]*C.fa_array{out, lse}, "out", "lse")
		if err != nil {
			return err
		}
		return merge(os, ls, ol[0], ol[1])
	})
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

// fastattn_set_worker_poll sets how long the library's workers poll for
// their next call before they sleep, in nanoseconds (negative counts as
// 0), and returns the previous setting (fastattn.SetWorkerPoll).
//
//export fastattn_set_worker_poll
func fastattn_set_worker_poll(nanos C.int64_t) C.int64_t {
	return C.int64_t(setWorkerPoll(int64(nanos)))
}

// fastattn_free frees a string returned by this library.
//
//export fastattn_free
func fastattn_free(s *C.char) { C.free(unsafe.Pointer(s)) }
