package quant

import "github.com/gotune/gotune/engine"

// Upload puts q on be as an engine.QuantWeight.
func Upload(be engine.Backend, q *Quantized) *engine.QuantWeight {
	w := &engine.QuantWeight{Rows: q.Rows, Cols: q.Cols, Bits: q.Format.Bits(), BlockSize: q.BlockSize,
		Codes: uploadBytes(be, q.Codes), Code: uploadF32(be, q.Code), NestedBlock: q.NestedBlock, Offset: q.Offset}
	if q.Nested() {
		w.QAbsmax = uploadBytes(be, q.QAbsmax)
		w.NestedCode = uploadF32(be, q.NestedCode)
		w.NestedAbsmax = uploadF32(be, q.NestedAbsmax)
	} else {
		w.Absmax = uploadF32(be, q.Absmax)
	}
	return w
}

// Free releases w's tensors.
func Free(be engine.Backend, w *engine.QuantWeight) {
	for _, t := range w.Tensors() {
		be.Free(t)
	}
}

func uploadF32(be engine.Backend, v []float32) *engine.Tensor {
	t := be.Alloc(engine.Float32, len(v))
	be.Upload(t, v)
	return t
}

// uploadBytes packs b four to an Int32 word, little-endian (the layout
// engine.QuantWeight documents), and uploads the words.
func uploadBytes(be engine.Backend, b []byte) *engine.Tensor {
	words := make([]int32, (len(b)+3)/4)
	for i, v := range b {
		words[i/4] |= int32(uint32(v) << (8 * (i % 4)))
	}
	t := be.Alloc(engine.Int32, len(words))
	be.UploadInt32(t, words)
	return t
}

// Download copies w back to the host (the inverse of Upload); f names
// its format (the weight itself only knows its bit width).
func Download(be engine.Backend, w *engine.QuantWeight, f Format) *Quantized {
	q := &Quantized{Format: f, Rows: w.Rows, Cols: w.Cols, BlockSize: w.BlockSize,
		Codes: downloadBytes(be, w.Codes, (w.Rows*w.Cols*w.Bits+7)/8), Code: be.Download(w.Code),
		NestedBlock: w.NestedBlock, Offset: w.Offset}
	if w.Nested() {
		q.QAbsmax = downloadBytes(be, w.QAbsmax, w.Blocks())
		q.NestedCode, q.NestedAbsmax = be.Download(w.NestedCode), be.Download(w.NestedAbsmax)
	} else {
		q.Absmax = be.Download(w.Absmax)
	}
	return q
}

// downloadBytes returns the first n bytes packed in an Int32 tensor.
func downloadBytes(be engine.Backend, t *engine.Tensor, n int) []byte {
	words := be.DownloadInt32(t)
	out := make([]byte, n)
	for i := range out {
		out[i] = byte(uint32(words[i/4]) >> (8 * (i % 4)))
	}
	return out
}
