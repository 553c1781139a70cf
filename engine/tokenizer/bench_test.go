package tokenizer

import (
	"math/rand/v2"
	"strings"
	"testing"

	tiktoken "github.com/tiktoken-go/tokenizer"
)

// benchLines is about 2 MB of English-like text in lines of about 100
// bytes, the shape of a fine-tuning dataset: each line is encoded on its
// own.
func benchLines() ([]string, int) {
	r := rand.New(rand.NewPCG(5, 6))
	var lines []string
	total := 0
	for total < 2<<20 {
		var b strings.Builder
		for b.Len() < 100 {
			w := rtWords[r.IntN(len(rtWords))]
			if r.IntN(8) == 0 {
				w = strings.ToUpper(w[:1]) + w[1:]
			}
			b.WriteString(w)
			switch r.IntN(12) {
			case 0:
				b.WriteString(", ")
			case 1:
				b.WriteString(". ")
			case 2:
				b.WriteString(" 19" + string(rune('0'+r.IntN(10))) + " ")
			default:
				b.WriteByte(' ')
			}
		}
		lines = append(lines, b.String())
		total += b.Len()
	}
	return lines, total
}

func benchEncode(b *testing.B, tok Tokenizer) {
	lines, total := benchLines()
	b.SetBytes(int64(total))
	b.ResetTimer()
	for b.Loop() {
		for _, l := range lines {
			if _, err := tok.Encode(l, true); err != nil {
				b.Fatal(err)
			}
		}
	}
}

// BenchmarkEncodeGPT2 is byte-level BPE with GPT-2's 50k vocabulary.
func BenchmarkEncodeGPT2(b *testing.B) { benchEncode(b, gpt2FromTiktoken(b)) }

// BenchmarkEncodeLLaMA3Style is byte-level BPE with the cl100k vocabulary
// and LLaMA-3's pattern.
func BenchmarkEncodeLLaMA3Style(b *testing.B) { benchEncode(b, llama3FromTiktoken(b)) }

// BenchmarkEncodeSentencePieceBPE is the LLaMA-2-style file, where each
// line is one BPE word (no pre-tokenizer), so the word cache does not help.
func BenchmarkEncodeSentencePieceBPE(b *testing.B) { benchEncode(b, loadSP(b)) }

// BenchmarkEncodeLlama2C is stories260K's tokenizer.
func BenchmarkEncodeLlama2C(b *testing.B) { benchEncode(b, loadTok512(b)) }

// BenchmarkEncodeTiktokenGo is tiktoken-go on the same text, for scale.
func BenchmarkEncodeTiktokenGo(b *testing.B) {
	codec, err := tiktoken.Get(tiktoken.R50kBase)
	if err != nil {
		b.Fatal(err)
	}
	lines, total := benchLines()
	b.SetBytes(int64(total))
	b.ResetTimer()
	for b.Loop() {
		for _, l := range lines {
			if _, _, err := codec.Encode(l); err != nil {
				b.Fatal(err)
			}
		}
	}
}

func BenchmarkDecodeGPT2(b *testing.B) {
	tok := gpt2FromTiktoken(b)
	lines, total := benchLines()
	ids := make([][]int, len(lines))
	for i, l := range lines {
		ids[i], _ = tok.Encode(l, false)
	}
	b.SetBytes(int64(total))
	b.ResetTimer()
	for b.Loop() {
		for _, x := range ids {
			_ = tok.Decode(x)
		}
	}
}
