package tokenizer

import "unicode/utf8"

// GPT-2's byte-level alphabet: every byte is written as one printable
// character so that a vocabulary of strings can hold arbitrary bytes.
// Printable Latin-1 bytes stand for themselves; the other 68 bytes (control
// characters, space, DEL, NBSP, soft hyphen...) are shifted to U+0100 and up,
// in byte order. That is why a leading space shows as "Ġ" (U+0120).
var (
	byteToRune [256]rune
	byteToStr  [256]string
	runeToByte = map[rune]byte{}
)

func init() {
	n := 0
	for b := 0; b < 256; b++ {
		printable := (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF)
		r := rune(b)
		if !printable {
			r = rune(256 + n)
			n++
		}
		byteToRune[b] = r
		byteToStr[b] = string(r)
		runeToByte[r] = byte(b)
	}
}

// byteLevelEncode writes s in the byte-level alphabet.
func byteLevelEncode(s string) string {
	buf := make([]byte, 0, 2*len(s))
	for i := 0; i < len(s); i++ {
		buf = utf8.AppendRune(buf, byteToRune[s[i]])
	}
	return string(buf)
}

// byteLevelDecode maps a byte-level string back to bytes. Like Hugging
// Face's ByteLevel decoder, a token with a character outside the alphabet
// (an added token such as "<|im_end|>" written with characters like "|" is
// fine; one with "é" is not) is kept as its UTF-8 text.
func byteLevelDecode(tok string) (string, bool) {
	out := make([]byte, 0, len(tok))
	for _, r := range tok {
		b, ok := runeToByte[r]
		if !ok {
			return tok, false
		}
		out = append(out, b)
	}
	return string(out), true
}
