package main

// Checkpoints: safetensors files holding the weights (under their names),
// AdamW's moments (adam.m.NAME, adam.v.NAME) and, in the metadata, the
// configuration and the training position, so that training resumes.

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strconv"

	"github.com/nlpodyssey/safetensors"
)

// AdamW is Loshchilov & Hutter's optimizer with decoupled weight decay.
type AdamW struct {
	M, V              []float32
	Beta1, Beta2, Eps float64
	WeightDecay       float64
	Step              int
}

// NewAdamW returns an optimizer for n weights with the usual GPT settings.
func NewAdamW(n int, weightDecay float64) *AdamW {
	return &AdamW{M: make([]float32, n), V: make([]float32, n), Beta1: 0.9, Beta2: 0.95, Eps: 1e-8, WeightDecay: weightDecay}
}

// Update applies one step with learning rate lr to m.W from m.G. Weight
// decay applies to matrices only.
func (o *AdamW) Update(m *Model, lr float64) {
	o.Step++
	b1c := 1 - math.Pow(o.Beta1, float64(o.Step))
	b2c := 1 - math.Pow(o.Beta2, float64(o.Step))
	b1, b2 := float32(o.Beta1), float32(o.Beta2)
	for _, s := range m.Specs {
		wd := float32(0)
		if s.Decay {
			wd = float32(lr * o.WeightDecay)
		}
		for i := s.Off; i < s.Off+s.Size; i++ {
			g := m.G[i]
			o.M[i] = b1*o.M[i] + (1-b1)*g
			o.V[i] = b2*o.V[i] + (1-b2)*g*g
			mh := float64(o.M[i]) / b1c
			vh := float64(o.V[i]) / b2c
			m.W[i] -= float32(lr*mh/(math.Sqrt(vh)+o.Eps)) + wd*m.W[i]
		}
	}
}

// clipGradients scales the gradient down to global norm maxNorm and
// returns the norm before clipping.
func clipGradients(g []float32, maxNorm float64) float64 {
	var ss float64
	for _, v := range g {
		ss += float64(v) * float64(v)
	}
	n := math.Sqrt(ss)
	if n > maxNorm {
		s := float32(maxNorm / n)
		for i := range g {
			g[i] *= s
		}
	}
	return n
}

// Checkpoint is what a checkpoint file restores.
type Checkpoint struct {
	Model *Model
	Opt   *AdamW // nil when the file has no optimizer state
	Meta  map[string]string
}

func f32view(x []float32, shape []int) safetensors.TensorView {
	b := make([]byte, 4*len(x))
	for i, v := range x {
		binary.LittleEndian.PutUint32(b[4*i:], math.Float32bits(v))
	}
	sh := make([]uint64, len(shape))
	for i, s := range shape {
		sh[i] = uint64(s)
	}
	tv, err := safetensors.NewTensorView(safetensors.F32, sh, b)
	if err != nil {
		panic(err) // sizes come from the model's own specs
	}
	return tv
}

// SaveCheckpoint writes the model (and opt, if not nil) to path, through
// a temporary file renamed into place so a crash never leaves half a file.
func SaveCheckpoint(path string, m *Model, opt *AdamW, meta map[string]string) error {
	tensors := map[string]safetensors.TensorView{}
	for _, s := range m.Specs {
		tensors[s.Name] = f32view(m.W[s.Off:s.Off+s.Size], s.Shape)
		if opt != nil {
			tensors["adam.m."+s.Name] = f32view(opt.M[s.Off:s.Off+s.Size], s.Shape)
			tensors["adam.v."+s.Name] = f32view(opt.V[s.Off:s.Off+s.Size], s.Shape)
		}
	}
	cfg, err := json.Marshal(m.Cfg)
	if err != nil {
		return err
	}
	info := map[string]string{"format": "fastattn-gpt", "config": string(cfg)}
	if opt != nil {
		info["adam_step"] = strconv.Itoa(opt.Step)
	}
	for k, v := range meta {
		info[k] = v
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), ".ckpt-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if err := safetensors.SerializeToWriter(tensors, info, tmp); err != nil {
		tmp.Close()
		return fmt.Errorf("writing checkpoint: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}

// LoadCheckpoint reads a file SaveCheckpoint wrote.
func LoadCheckpoint(path string) (*Checkpoint, error) {
	buf, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	st, err := safetensors.Deserialize(buf)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	_, md, err := safetensors.ReadMetadata(buf)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	meta := md.Metadata()
	if meta["format"] != "fastattn-gpt" {
		return nil, fmt.Errorf("%s is not a checkpoint of this program (metadata format %q)", path, meta["format"])
	}
	var cfg Config
	if err := json.Unmarshal([]byte(meta["config"]), &cfg); err != nil {
		return nil, fmt.Errorf("%s: bad config metadata: %w", path, err)
	}
	m, err := NewModel(cfg, 0)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	read := func(name string, dst []float32) (bool, error) {
		tv, ok := st.Tensor(name)
		if !ok {
			return false, nil
		}
		if tv.DType() != safetensors.F32 || len(tv.Data()) != 4*len(dst) {
			return false, fmt.Errorf("%s: tensor %s has dtype %v and %d bytes, want F32 and %d", path, name, tv.DType(), len(tv.Data()), 4*len(dst))
		}
		d := tv.Data()
		for i := range dst {
			dst[i] = math.Float32frombits(binary.LittleEndian.Uint32(d[4*i:]))
		}
		return true, nil
	}
	ck := &Checkpoint{Model: m, Meta: meta}
	if s, ok := meta["adam_step"]; ok {
		step, err := strconv.Atoi(s)
		if err != nil {
			return nil, fmt.Errorf("%s: bad adam_step %q", path, s)
		}
		ck.Opt = NewAdamW(len(m.W), 0)
		ck.Opt.Step = step
	}
	for _, s := range m.Specs {
		ok, err := read(s.Name, m.W[s.Off:s.Off+s.Size])
		if err != nil {
			return nil, err
		}
		if !ok {
			return nil, fmt.Errorf("%s: tensor %s is missing", path, s.Name)
		}
		if ck.Opt != nil {
			for _, x := range []struct {
				prefix string
				dst    []float32
			}{{"adam.m.", ck.Opt.M}, {"adam.v.", ck.Opt.V}} {
				ok, err := read(x.prefix+s.Name, x.dst[s.Off:s.Off+s.Size])
				if err != nil {
					return nil, err
				}
				if !ok {
					return nil, fmt.Errorf("%s: tensor %s%s is missing", path, x.prefix, s.Name)
				}
			}
		}
	}
	return ck, nil
}
