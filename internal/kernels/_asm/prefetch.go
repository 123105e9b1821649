package main

// genPrefetch emits prefetchL2(p *byte, lines int): PREFETCHT1 of the
// lines 64-byte cache lines from p on. The GEMM driver spreads these over
// its microkernel calls to bring the next tile's operands from L3 into L2
// while the current tile computes (a prefetch never faults).
func genPrefetch() {
	typeSize["*byte"] = 8
	f := sig("prefetchL2", ps("p", "*byte", "lines", "int"), nil)
	text(f)
	emit("MOVQ %s, SI", f.fp("p"))
	emit("MOVQ %s, CX", f.fp("lines"))
	emit("TESTQ CX, CX")
	emit("JLE done")
	label("loop")
	emit("PREFETCHT1 (SI)")
	emit("ADDQ $64, SI")
	emit("DECQ CX")
	emit("JNZ loop")
	label("done")
	emit("RET\n")
}
