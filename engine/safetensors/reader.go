package safetensors

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"sort"
	"unicode/utf8"
)

// MaxHeaderSize is the largest JSON header Open accepts, the same cap as the
// reference implementation: a length beyond it is corruption, not a model.
const MaxHeaderSize = 100_000_000

// metadataKey is the reserved header key holding the free-form string map.
const metadataKey = "__metadata__"

// TensorInfo describes one tensor of a file, as its header declares it.
type TensorInfo struct {
	// Name is the header key, e.g. "model.embed_tokens.weight".
	Name string
	// DType is the safetensors dtype name, e.g. "F32" or "BF16".
	DType string
	// Shape holds the dimensions, outermost first (empty for a scalar).
	Shape []int
	// Begin and End are the header's data_offsets: the byte range
	// [Begin, End) relative to the start of the data section.
	Begin, End int64
}

// Numel returns the number of elements (1 for a scalar).
func (t TensorInfo) Numel() int {
	n := 1
	for _, d := range t.Shape {
		n *= d
	}
	return n
}

// File is an open safetensors file whose header has been validated. Tensor
// data is read on demand. A File is safe for concurrent reads.
type File struct {
	path      string
	f         *os.File
	dataStart int64 // file offset of the data section
	infos     map[string]TensorInfo
	names     []string
	metadata  map[string]string
}

// Open opens a safetensors file and validates its header: the header length
// against the file size and MaxHeaderSize, well-formed UTF-8 JSON with no
// duplicate keys, a string→string "__metadata__", and for every tensor a
// known dtype, a non-negative shape, data_offsets with begin <= end inside
// the data section, end-begin equal to the element count times the dtype
// size, and no two tensors sharing bytes. Gaps between tensors are allowed.
// Every error names the file and, where there is one, the tensor.
func Open(path string) (*File, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err // *PathError already names the file
	}
	sf, err := readHeader(path, f)
	if err != nil {
		f.Close()
		return nil, err
	}
	return sf, nil
}

func readHeader(path string, f *os.File) (*File, error) {
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	size := st.Size()
	if size < 8 {
		return nil, fmt.Errorf("%s: file is %d bytes, too short for the 8-byte header length of a safetensors file", path, size)
	}
	var lenBuf [8]byte
	if _, err := f.ReadAt(lenBuf[:], 0); err != nil {
		return nil, fmt.Errorf("%s: reading header length: %w", path, err)
	}
	n := binary.LittleEndian.Uint64(lenBuf[:])
	if n > MaxHeaderSize {
		return nil, fmt.Errorf("%s: header length %d exceeds the %d-byte limit (not a safetensors file, or corrupt)", path, n, MaxHeaderSize)
	}
	if int64(n) > size-8 {
		return nil, fmt.Errorf("%s: header length %d goes beyond the end of the file (%d bytes after the length field; truncated?)", path, n, size-8)
	}
	header := make([]byte, n)
	if _, err := f.ReadAt(header, 8); err != nil {
		return nil, fmt.Errorf("%s: reading header: %w", path, err)
	}
	sf := &File{path: path, f: f, dataStart: 8 + int64(n)}
	if err := sf.parseHeader(header, size-sf.dataStart); err != nil {
		return nil, err
	}
	return sf, nil
}

// rawInfo is one tensor entry as it appears in the JSON header. Pointers
// tell a missing field from a zero one.
type rawInfo struct {
	DType       *string  `json:"dtype"`
	Shape       *[]int64 `json:"shape"`
	DataOffsets *[]int64 `json:"data_offsets"`
}

func (sf *File) parseHeader(header []byte, dataSize int64) error {
	path := sf.path
	if !utf8.Valid(header) {
		return fmt.Errorf("%s: header is not valid UTF-8", path)
	}
	dec := json.NewDecoder(bytes.NewReader(header))
	dec.UseNumber()
	syntaxErr := func(err error) error {
		var se *json.SyntaxError
		if errors.As(err, &se) {
			return fmt.Errorf("%s: malformed JSON header at byte %d of the header: %v", path, se.Offset, err)
		}
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			return fmt.Errorf("%s: malformed JSON header: unexpected end of header", path)
		}
		return fmt.Errorf("%s: malformed JSON header: %v", path, err)
	}
	tok, err := dec.Token()
	if err != nil {
		return syntaxErr(err)
	}
	if d, ok := tok.(json.Delim); !ok || d != '{' {
		return fmt.Errorf("%s: header is not a JSON object", path)
	}
	sf.infos = make(map[string]TensorInfo)
	seen := make(map[string]bool)
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return syntaxErr(err)
		}
		name := tok.(string) // object keys are always strings
		if seen[name] {
			if name == metadataKey {
				return fmt.Errorf("%s: header has %q twice", path, name)
			}
			return fmt.Errorf("%s: tensor %q appears twice in the header", path, name)
		}
		seen[name] = true
		if name == metadataKey {
			var md map[string]string
			if err := dec.Decode(&md); err != nil {
				var te *json.UnmarshalTypeError
				if errors.As(err, &te) {
					return fmt.Errorf("%s: %q must map strings to strings: %v", path, metadataKey, err)
				}
				return syntaxErr(err)
			}
			sf.metadata = md
			continue
		}
		var raw rawInfo
		if err := dec.Decode(&raw); err != nil {
			var te *json.UnmarshalTypeError
			if errors.As(err, &te) {
				return fmt.Errorf("%s: tensor %q: field %q has the wrong type: %v", path, name, te.Field, err)
			}
			return syntaxErr(err)
		}
		info, err := checkInfo(name, raw, dataSize)
		if err != nil {
			return fmt.Errorf("%s: tensor %q: %w", path, name, err)
		}
		sf.infos[name] = info
	}
	if _, err := dec.Token(); err != nil { // closing brace
		return syntaxErr(err)
	}
	// Only spaces may follow (the writer's alignment padding).
	if off := dec.InputOffset(); len(bytes.TrimSpace(header[off:])) != 0 {
		return fmt.Errorf("%s: malformed JSON header: unexpected data after the header object at byte %d", path, off)
	}
	sf.names = make([]string, 0, len(sf.infos))
	for name := range sf.infos {
		sf.names = append(sf.names, name)
	}
	sort.Strings(sf.names)
	return sf.checkOverlaps()
}

// checkInfo validates one header entry against the data section size.
func checkInfo(name string, raw rawInfo, dataSize int64) (TensorInfo, error) {
	info := TensorInfo{Name: name}
	if name == "" {
		return info, errors.New("empty tensor name")
	}
	switch {
	case raw.DType == nil:
		return info, errors.New(`missing "dtype"`)
	case raw.Shape == nil:
		return info, errors.New(`missing "shape"`)
	case raw.DataOffsets == nil:
		return info, errors.New(`missing "data_offsets"`)
	}
	info.DType = *raw.DType
	dt, ok := dtypes[info.DType]
	if !ok {
		return info, fmt.Errorf("unknown dtype %q (known: %s)", info.DType, knownDTypes())
	}
	info.Shape = make([]int, len(*raw.Shape))
	for i, d := range *raw.Shape {
		if d < 0 || d > math.MaxInt64/2 {
			return info, fmt.Errorf("shape %v: dimension %d is out of range", *raw.Shape, i)
		}
		info.Shape[i] = int(d)
	}
	_, nbytes, err := numelBytes(info.Shape, dt.size)
	if err != nil {
		return info, err
	}
	offs := *raw.DataOffsets
	if len(offs) != 2 {
		return info, fmt.Errorf("data_offsets %v must be [begin, end]", offs)
	}
	info.Begin, info.End = offs[0], offs[1]
	if info.Begin < 0 || info.End < info.Begin {
		return info, fmt.Errorf("data_offsets %v are not a byte range [begin <= end]", offs)
	}
	if info.End-info.Begin != nbytes {
		return info, fmt.Errorf("data_offsets %v need %d bytes but shape %v of %s needs %d", offs, info.End-info.Begin, info.Shape, info.DType, nbytes)
	}
	if info.End > dataSize {
		return info, fmt.Errorf("data_offsets %v end beyond the data section, which has %d bytes (file truncated?)", offs, dataSize)
	}
	return info, nil
}

// checkOverlaps rejects two non-empty tensors sharing bytes: a writer never
// produces that, and aliasing would make an in-place update of one tensor
// silently change the other.
func (sf *File) checkOverlaps() error {
	byStart := make([]TensorInfo, 0, len(sf.infos))
	for _, name := range sf.names {
		if info := sf.infos[name]; info.End > info.Begin {
			byStart = append(byStart, info)
		}
	}
	sort.SliceStable(byStart, func(i, j int) bool { return byStart[i].Begin < byStart[j].Begin })
	for i := 1; i < len(byStart); i++ {
		prev, cur := byStart[i-1], byStart[i]
		if cur.Begin < prev.End {
			return fmt.Errorf("%s: tensor %q: data_offsets [%d, %d] overlap tensor %q at [%d, %d]",
				sf.path, cur.Name, cur.Begin, cur.End, prev.Name, prev.Begin, prev.End)
		}
	}
	return nil
}

// Path returns the path the file was opened with.
func (sf *File) Path() string { return sf.path }

// Names returns the tensor names in sorted order (a fresh slice).
func (sf *File) Names() []string { return append([]string(nil), sf.names...) }

// Info returns the header entry of a tensor and whether it exists.
func (sf *File) Info(name string) (TensorInfo, bool) {
	info, ok := sf.infos[name]
	if ok {
		info.Shape = append([]int(nil), info.Shape...)
	}
	return info, ok
}

// Metadata returns a copy of the "__metadata__" map (nil when absent).
func (sf *File) Metadata() map[string]string {
	if sf.metadata == nil {
		return nil
	}
	md := make(map[string]string, len(sf.metadata))
	for k, v := range sf.metadata {
		md[k] = v
	}
	return md
}

// Close closes the underlying file.
func (sf *File) Close() error { return sf.f.Close() }

func (sf *File) lookup(name string) (TensorInfo, error) {
	info, ok := sf.infos[name]
	if !ok {
		return info, fmt.Errorf("%s: no tensor %q", sf.path, name)
	}
	return info, nil
}

// Raw returns a copy of a tensor's little-endian bytes as stored.
func (sf *File) Raw(name string) ([]byte, error) {
	info, err := sf.lookup(name)
	if err != nil {
		return nil, err
	}
	buf := make([]byte, info.End-info.Begin)
	if err := sf.readAt(info, buf, info.Begin); err != nil {
		return nil, err
	}
	return buf, nil
}

func (sf *File) readAt(info TensorInfo, buf []byte, off int64) error {
	if _, err := sf.f.ReadAt(buf, sf.dataStart+off); err != nil {
		if errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF // the file shrank after Open
		}
		return fmt.Errorf("%s: tensor %q: reading data: %w", sf.path, info.Name, err)
	}
	return nil
}

// chunkBytes bounds the scratch buffer used while converting, so reading a
// tensor costs its output slice plus at most this much.
const chunkBytes = 1 << 20

// forChunks reads a tensor in pieces of whole elements and hands each piece
// and the index of its first element to fn.
func (sf *File) forChunks(info TensorInfo, fn func(b []byte, first int)) error {
	size := int64(dtypes[info.DType].size)
	total := info.End - info.Begin
	step := int64(chunkBytes) / size * size
	buf := make([]byte, min(step, total))
	for off := int64(0); off < total; off += step {
		b := buf[:min(step, total-off)]
		if err := sf.readAt(info, b, info.Begin+off); err != nil {
			return err
		}
		fn(b, int(off/size))
	}
	return nil
}

// Float32 reads a floating-point tensor (F32, F16, BF16 or F64) converted to
// float32, and returns it with its shape. F64 values are rounded to nearest.
func (sf *File) Float32(name string) ([]float32, []int, error) {
	info, err := sf.lookup(name)
	if err != nil {
		return nil, nil, err
	}
	if !IsFloat(info.DType) {
		return nil, nil, fmt.Errorf("%s: tensor %q has dtype %s, not a float type (F32, F16, BF16, F64)", sf.path, name, info.DType)
	}
	out := make([]float32, info.Numel())
	err = sf.forChunks(info, func(b []byte, first int) {
		decodeFloat32(info.DType, b, out[first:])
	})
	if err != nil {
		return nil, nil, err
	}
	return out, append([]int(nil), info.Shape...), nil
}

// decodeFloat32 converts little-endian elements of dtype in b into dst.
func decodeFloat32(dtype string, b []byte, dst []float32) {
	le := binary.LittleEndian
	switch dtype {
	case F32:
		for i := 0; i < len(b)/4; i++ {
			dst[i] = math.Float32frombits(le.Uint32(b[4*i:]))
		}
	case F16:
		for i := 0; i < len(b)/2; i++ {
			dst[i] = F16ToF32(le.Uint16(b[2*i:]))
		}
	case BF16:
		for i := 0; i < len(b)/2; i++ {
			dst[i] = BF16ToF32(le.Uint16(b[2*i:]))
		}
	case F64:
		for i := 0; i < len(b)/8; i++ {
			dst[i] = float32(math.Float64frombits(le.Uint64(b[8*i:])))
		}
	}
}

// Int64s reads an integer or BOOL tensor as int64 values, with its shape.
// A U64 value above math.MaxInt64 is an error, not a silent wrap.
func (sf *File) Int64s(name string) ([]int64, []int, error) {
	info, err := sf.lookup(name)
	if err != nil {
		return nil, nil, err
	}
	if !IsInteger(info.DType) {
		return nil, nil, fmt.Errorf("%s: tensor %q has dtype %s, not an integer type", sf.path, name, info.DType)
	}
	out := make([]int64, info.Numel())
	bad := -1
	err = sf.forChunks(info, func(b []byte, first int) {
		if i := decodeInt64(info.DType, b, out[first:]); i >= 0 && bad < 0 {
			bad = first + i
		}
	})
	if err != nil {
		return nil, nil, err
	}
	if bad >= 0 {
		return nil, nil, fmt.Errorf("%s: tensor %q: element %d does not fit in int64", sf.path, name, bad)
	}
	return out, append([]int(nil), info.Shape...), nil
}

// decodeInt64 converts little-endian integers of dtype in b into dst and
// returns the index of the first U64 value that overflows int64, or -1.
func decodeInt64(dtype string, b []byte, dst []int64) int {
	le := binary.LittleEndian
	bad := -1
	switch dtype {
	case BOOL, U8:
		for i, v := range b {
			dst[i] = int64(v)
		}
	case I8:
		for i, v := range b {
			dst[i] = int64(int8(v))
		}
	case I16:
		for i := 0; i < len(b)/2; i++ {
			dst[i] = int64(int16(le.Uint16(b[2*i:])))
		}
	case U16:
		for i := 0; i < len(b)/2; i++ {
			dst[i] = int64(le.Uint16(b[2*i:]))
		}
	case I32:
		for i := 0; i < len(b)/4; i++ {
			dst[i] = int64(int32(le.Uint32(b[4*i:])))
		}
	case U32:
		for i := 0; i < len(b)/4; i++ {
			dst[i] = int64(le.Uint32(b[4*i:]))
		}
	case I64:
		for i := 0; i < len(b)/8; i++ {
			dst[i] = int64(le.Uint64(b[8*i:]))
		}
	case U64:
		for i := 0; i < len(b)/8; i++ {
			v := le.Uint64(b[8*i:])
			if v > math.MaxInt64 && bad < 0 {
				bad = i
			}
			dst[i] = int64(v)
		}
	}
	return bad
}
