// Module asmgen generates fastattn's amd64 kernels. It is a separate module
// so the main module gains no dependency; run `go generate` in the parent
// package directory (or `go run .` here) to rewrite the .s and stub files.
module asmgen

go 1.26
