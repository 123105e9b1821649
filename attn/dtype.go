package attn

// DTypeName returns "float32" or "float64", the name of T in reports and
// error messages (NumPy's and PyTorch's spelling).
func DTypeName[T Float]() string {
	var x T
	if _, ok := any(x).(float32); ok {
		return "float32"
	}
	return "float64"
}
