package safetensors

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"sort"
	"strconv"
	"unicode/utf8"

	"github.com/gotune/gotune/engine/fsutil"
)

// Tensor is one tensor to write. Exactly one of F32, I64 and Raw holds the
// data, in row-major order:
//   - F32 for the float dtypes F32, F16, BF16 and F64 (converted on write;
//     F16 and BF16 round to nearest, ties to even);
//   - I64 for the integer dtypes and BOOL (each value must fit the dtype;
//     BOOL takes 0 or 1);
//   - Raw for any dtype, as already-encoded little-endian bytes (used to
//     copy a tensor unchanged, e.g. from File.Raw).
type Tensor struct {
	// Name is the header key; it must be non-empty, valid UTF-8, unique and
	// not "__metadata__".
	Name string
	// DType is the safetensors dtype to store, e.g. "F32" or "BF16".
	DType string
	// Shape holds the dimensions (empty for a scalar).
	Shape []int
	// F32 holds float data.
	F32 []float32
	// I64 holds integer or boolean data.
	I64 []int64
	// Raw holds pre-encoded data.
	Raw []byte
}

// Write writes tensors and an optional metadata map (nil for none) to path
// atomically (see fsutil.WriteFileAtomic), in the reference layout described
// in the package documentation.
func Write(path string, tensors []Tensor, metadata map[string]string) error {
	order, header, err := prepare(tensors, metadata)
	if err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	return fsutil.WriteFileAtomic(path, 0o644, func(w io.Writer) error {
		return encode(w, order, header)
	})
}

// Encode writes the same bytes as Write to w (without the atomic file
// handling), for callers that stream elsewhere.
func Encode(w io.Writer, tensors []Tensor, metadata map[string]string) error {
	order, header, err := prepare(tensors, metadata)
	if err != nil {
		return err
	}
	return encode(w, order, header)
}

// prepare validates the tensors, orders them like the reference writer
// (descending dtype alignment, then name) and builds the padded header.
func prepare(tensors []Tensor, metadata map[string]string) ([]*Tensor, []byte, error) {
	order := make([]*Tensor, len(tensors))
	seen := make(map[string]bool, len(tensors))
	for i := range tensors {
		t := &tensors[i]
		if err := checkTensor(t); err != nil {
			return nil, nil, fmt.Errorf("tensor %q: %w", t.Name, err)
		}
		if seen[t.Name] {
			return nil, nil, fmt.Errorf("tensor %q given twice", t.Name)
		}
		seen[t.Name] = true
		order[i] = t
	}
	sort.Slice(order, func(i, j int) bool {
		ri, rj := dtypes[order[i].DType].rank, dtypes[order[j].DType].rank
		if ri != rj {
			return ri > rj
		}
		return order[i].Name < order[j].Name
	})

	// Compact JSON exactly as serde_json prints the reference's header.
	h := []byte{'{'}
	if metadata != nil {
		keys := make([]string, 0, len(metadata))
		for k, v := range metadata {
			if !utf8.ValidString(k) || !utf8.ValidString(v) {
				return nil, nil, fmt.Errorf("metadata %q: not valid UTF-8", k)
			}
			keys = append(keys, k)
		}
		sort.Strings(keys)
		h = appendJSONString(h, metadataKey)
		h = append(h, ":{"...)
		for i, k := range keys {
			if i > 0 {
				h = append(h, ',')
			}
			h = appendJSONString(h, k)
			h = append(h, ':')
			h = appendJSONString(h, metadata[k])
		}
		h = append(h, '}')
	}
	var off int64
	for i, t := range order {
		if i > 0 || metadata != nil {
			h = append(h, ',')
		}
		_, nbytes, _ := numelBytes(t.Shape, dtypes[t.DType].size)
		h = appendJSONString(h, t.Name)
		h = append(h, `:{"dtype":`...)
		h = appendJSONString(h, t.DType)
		h = append(h, `,"shape":[`...)
		for j, d := range t.Shape {
			if j > 0 {
				h = append(h, ',')
			}
			h = strconv.AppendInt(h, int64(d), 10)
		}
		h = append(h, `],"data_offsets":[`...)
		h = strconv.AppendInt(h, off, 10)
		h = append(h, ',')
		off += nbytes
		h = strconv.AppendInt(h, off, 10)
		h = append(h, "]}"...)
	}
	h = append(h, '}')
	for len(h)%8 != 0 {
		h = append(h, ' ')
	}
	return order, h, nil
}

// checkTensor validates a tensor's name, dtype, shape and data length.
func checkTensor(t *Tensor) error {
	if t.Name == "" || t.Name == metadataKey || !utf8.ValidString(t.Name) {
		return errors.New("invalid tensor name")
	}
	dt, ok := dtypes[t.DType]
	if !ok {
		return fmt.Errorf("unknown dtype %q (known: %s)", t.DType, knownDTypes())
	}
	numel, nbytes, err := numelBytes(t.Shape, dt.size)
	if err != nil {
		return err
	}
	sources := 0
	for _, set := range []bool{t.F32 != nil, t.I64 != nil, t.Raw != nil} {
		if set {
			sources++
		}
	}
	if sources == 0 && numel == 0 {
		return nil // an empty tensor needs no data
	}
	if sources != 1 {
		return errors.New("exactly one of F32, I64 and Raw must hold the data")
	}
	switch {
	case t.Raw != nil:
		if int64(len(t.Raw)) != nbytes {
			return fmt.Errorf("Raw has %d bytes but shape %v of %s needs %d", len(t.Raw), t.Shape, t.DType, nbytes)
		}
	case t.F32 != nil:
		if !IsFloat(t.DType) {
			return fmt.Errorf("F32 data cannot be stored as %s (use I64 or Raw)", t.DType)
		}
		if int64(len(t.F32)) != numel {
			return fmt.Errorf("F32 has %d values but shape %v has %d elements", len(t.F32), t.Shape, numel)
		}
	default:
		if !IsInteger(t.DType) {
			return fmt.Errorf("I64 data cannot be stored as %s (use F32 or Raw)", t.DType)
		}
		if int64(len(t.I64)) != numel {
			return fmt.Errorf("I64 has %d values but shape %v has %d elements", len(t.I64), t.Shape, numel)
		}
		lo, hi := intRange(t.DType)
		for i, v := range t.I64 {
			if v < lo || v > hi {
				return fmt.Errorf("element %d = %d does not fit %s", i, v, t.DType)
			}
		}
	}
	return nil
}

// intRange returns the values an integer dtype can hold.
func intRange(dtype string) (lo, hi int64) {
	switch dtype {
	case BOOL:
		return 0, 1
	case U8:
		return 0, math.MaxUint8
	case I8:
		return math.MinInt8, math.MaxInt8
	case I16:
		return math.MinInt16, math.MaxInt16
	case U16:
		return 0, math.MaxUint16
	case I32:
		return math.MinInt32, math.MaxInt32
	case U32:
		return 0, math.MaxUint32
	case U64:
		return 0, math.MaxInt64
	default:
		return math.MinInt64, math.MaxInt64
	}
}

// encode writes the length, the header and every tensor's data in order,
// converting through a bounded scratch buffer.
func encode(w io.Writer, order []*Tensor, header []byte) error {
	var n [8]byte
	binary.LittleEndian.PutUint64(n[:], uint64(len(header)))
	if _, err := w.Write(n[:]); err != nil {
		return err
	}
	if _, err := w.Write(header); err != nil {
		return err
	}
	buf := make([]byte, 0, chunkBytes)
	for _, t := range order {
		if t.Raw != nil {
			if _, err := w.Write(t.Raw); err != nil {
				return err
			}
			continue
		}
		size := dtypes[t.DType].size
		count := len(t.F32)
		if t.I64 != nil {
			count = len(t.I64)
		}
		per := chunkBytes / size
		for first := 0; first < count; first += per {
			last := min(first+per, count)
			buf = buf[:(last-first)*size]
			if t.F32 != nil {
				encodeFloat32(t.DType, t.F32[first:last], buf)
			} else {
				encodeInt64(t.DType, t.I64[first:last], buf)
			}
			if _, err := w.Write(buf); err != nil {
				return err
			}
		}
	}
	return nil
}

func encodeFloat32(dtype string, src []float32, b []byte) {
	le := binary.LittleEndian
	switch dtype {
	case F32:
		for i, v := range src {
			le.PutUint32(b[4*i:], math.Float32bits(v))
		}
	case F16:
		for i, v := range src {
			le.PutUint16(b[2*i:], F32ToF16(v))
		}
	case BF16:
		for i, v := range src {
			le.PutUint16(b[2*i:], F32ToBF16(v))
		}
	case F64:
		for i, v := range src {
			le.PutUint64(b[8*i:], math.Float64bits(float64(v)))
		}
	}
}

func encodeInt64(dtype string, src []int64, b []byte) {
	le := binary.LittleEndian
	switch dtypes[dtype].size {
	case 1:
		for i, v := range src {
			b[i] = byte(v)
		}
	case 2:
		for i, v := range src {
			le.PutUint16(b[2*i:], uint16(v))
		}
	case 4:
		for i, v := range src {
			le.PutUint32(b[4*i:], uint32(v))
		}
	case 8:
		for i, v := range src {
			le.PutUint64(b[8*i:], uint64(v))
		}
	}
}

// appendJSONString appends s as a JSON string the way serde_json does:
// only '"', '\\' and control characters are escaped (\b \t \n \f \r short,
// others as \u00xx); everything else, non-ASCII included, is copied as is.
func appendJSONString(b []byte, s string) []byte {
	const hex = "0123456789abcdef"
	b = append(b, '"')
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch c {
		case '"':
			b = append(b, '\\', '"')
		case '\\':
			b = append(b, '\\', '\\')
		case '\b':
			b = append(b, '\\', 'b')
		case '\t':
			b = append(b, '\\', 't')
		case '\n':
			b = append(b, '\\', 'n')
		case '\f':
			b = append(b, '\\', 'f')
		case '\r':
			b = append(b, '\\', 'r')
		default:
			if c < 0x20 {
				b = append(b, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xf])
			} else {
				b = append(b, c)
			}
		}
	}
	return append(b, '"')
}
