package main

import (
	"flag"
	"fmt"
	"math"
	"strconv"
	"strings"

	"github.com/gotune/gotune/engine/model"
	"github.com/gotune/gotune/engine/safetensors"
)

// saveFlags choose how a full-weight checkpoint is stored (gotune train
// --method full/freeze, gotune merge).
type saveFlags struct {
	dtype, maxShard string
}

func (f *saveFlags) define(fs *flag.FlagSet, what string) {
	fs.StringVar(&f.dtype, "save-dtype", "auto", "`dtype` of the saved "+what+": auto (the base model's torch_dtype, as transformers keeps it), f32, bf16 or f16; config.json's torch_dtype follows")
	fs.StringVar(&f.maxShard, "max-shard-size", "5GB", "largest weight file (`SIZE`: bytes, or a number with KB, MB, GB, TB or KiB, MiB, GiB, TiB); larger checkpoints are split into model-0000i-of-0000N.safetensors shards plus model.safetensors.index.json, as transformers does")
}

// options validates the flags into model.SaveOptions.
func (f *saveFlags) options() (model.SaveOptions, error) {
	var o model.SaveOptions
	switch strings.ToLower(strings.TrimSpace(f.dtype)) {
	case "auto":
	case "f32", "float32":
		o.DType = safetensors.F32
	case "bf16", "bfloat16":
		o.DType = safetensors.BF16
	case "f16", "float16":
		o.DType = safetensors.F16
	default:
		return o, &usageError{msg: fmt.Sprintf("unknown --save-dtype %q (want auto, f32, bf16 or f16)", f.dtype)}
	}
	n, err := parseSize(f.maxShard)
	if err != nil {
		return o, &usageError{msg: "--max-shard-size: " + err.Error()}
	}
	o.MaxShardBytes = n
	return o, nil
}

// sizeUnits are the suffixes parseSize accepts, decimal as in
// huggingface_hub's parse_size_to_int ("5GB" = 5·10⁹) plus the binary
// ones.
var sizeUnits = map[string]float64{
	"": 1, "B": 1,
	"KB": 1e3, "MB": 1e6, "GB": 1e9, "TB": 1e12,
	"KIB": 1 << 10, "MIB": 1 << 20, "GIB": 1 << 30, "TIB": 1 << 40,
}

// parseSize reads a positive byte count such as "5GB", "500MB", "1.5GiB"
// or "1048576" (case-insensitive, spaces allowed).
func parseSize(s string) (int64, error) {
	t := strings.ToUpper(strings.ReplaceAll(s, " ", ""))
	i := strings.IndexFunc(t, func(r rune) bool { return (r < '0' || r > '9') && r != '.' })
	num, unit := t, ""
	if i >= 0 {
		num, unit = t[:i], t[i:]
	}
	mult, ok := sizeUnits[unit]
	if !ok {
		return 0, fmt.Errorf("unknown unit in %q (use B, KB, MB, GB, TB, KiB, MiB, GiB or TiB)", s)
	}
	v, err := strconv.ParseFloat(num, 64)
	if err != nil || num == "" {
		return 0, fmt.Errorf("%q is not a size such as 5GB or 500MB", s)
	}
	bytes := math.Floor(v * mult)
	if !(bytes >= 1) || bytes > math.MaxInt64/2 {
		return 0, fmt.Errorf("%q must be at least 1 byte and finite", s)
	}
	return int64(bytes), nil
}
