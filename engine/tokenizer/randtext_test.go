package tokenizer

import (
	"math/rand/v2"
	"strings"
)

// Random and adversarial strings for the agreement and round-trip tests:
// words, contractions in every case (and with U+017F), digit runs,
// whitespace runs of every kind, punctuation, many scripts, combining marks,
// emoji sequences, random code points and control characters.

var (
	rtWords = strings.Fields(`the a an and to of in is was it he she they we you I
	that his her their with for on at by from up out down over once upon time
	there little girl boy named Lily Tim happy big small red ball tree park
	sun dog cat play played said wanted loved went very so but not one day all
	what when where who why how can could would hello world token model train
	fine tune data Hugging Face LLaMA GPT byte level pair encoding merge rank`)
	rtContractions = []string{"don't", "it's", "I'm", "you're", "we've", "they'll",
		"he'd", "IT'S", "DON'T", "You'RE", "we'VE", "They'LL", "i'M", "she'D",
		"it’s", "'s", "'t", "'re", "'ve", "'m", "'ll", "'d", "'S", "'ſ", "ſ",
		"''s", "'''", "x'", "'x", "O'Neil", "rock'n'roll", "'Re", "'lL"}
	rtUnicode = []string{"café", "naïve", "Привет", "мир", "Γειά", "中文",
		"日本語", "ひらがな", "한국어", "مرحبا", "שלום", "हिन्दी", "ภาษาไทย",
		"straße", "ǅungla", "İstanbul", "Ⅻ", "½", "²³", "٣٤٥", "१२३", "ＡＢＣ",
		"ﬁ", "e\u0301", "a\u0308o\u0308", "\u0301", "Z̤͔ͧ̑̓ä͖̭̈̇lͮ̒ͫǧ̗͚̚o̙̔ͮ̇͐̇",
		"“quoted”", "‘single’", "–", "—", "…", "€", "™", "é", "ñ", "â"}
	rtEmoji  = []string{"😀", "👍", "👍🏽", "👨‍👩‍👧‍👦", "🇺🇸", "❤️", "🤖", "🎉🎉", "🧑🏿‍🚀", "\u200d", "\ufe0f"}
	rtSpaces = []string{" ", "  ", "   ", "\t", "\n", "\r", "\r\n", "\n\n",
		"\u00a0", "\u3000", "\u2028", "\x0b", "\x0c", "\u0085", " \n ", "\t\t",
		"      ", "\u2009", " \r\n\t "}
	rtPunct = []string{".", ",", "!", "?", ";", ":", "'", "\"", "-", "(", ")",
		"[", "]", "{", "}", "<", ">", "/", "\\", "|", "@", "#", "$", "%", "^",
		"&", "*", "_", "+", "=", "~", "`", "...", "?!", "--", "->", "::", "<|",
		"|>", "<0x41>", "▁", "Ġ", "Ċ"}
	rtFixed = []string{"", " ", "  ", "\n", "a", "ab", strings.Repeat("a", 40),
		strings.Repeat(" ", 17), strings.Repeat("\n", 9), strings.Repeat("1234567890", 4),
		"   leading", "trailing   ", " \n \n", "x's", "'s'", "Hello, World!",
		"\t\tindented\n", "a b  c   d    e", strings.Repeat("🙂", 5),
		"The year 2024 had 366 days.", "3.14159", "1,000,000", "ſs'ſ", "\r\n\r\n",
		"  \n  hello", "\n\nhello", "x  \ty", "!!!abc", " !!!\n\n", "12345 678"}
)

// randString returns one random string. With invalid set it may also
// contain bytes that are not valid UTF-8.
func randString(r *rand.Rand, invalid bool) string {
	x := r.Float64()
	if x < 0.03 {
		return rtFixed[r.IntN(len(rtFixed))]
	}
	n := 1 + r.IntN(25)
	if x > 0.99 {
		n = 100 + r.IntN(300)
	}
	var b strings.Builder
	for range n {
		b.WriteString(randItem(r, invalid))
		if r.Float64() < 0.6 {
			b.WriteByte(' ')
		}
	}
	return b.String()
}

func randItem(r *rand.Rand, invalid bool) string {
	pick := func(l []string) string { return l[r.IntN(len(l))] }
	x := r.Float64()
	switch {
	case x < 0.38:
		w := pick(rtWords)
		switch r.IntN(10) {
		case 0:
			w = strings.ToUpper(w)
		case 1:
			w = strings.ToUpper(w[:1]) + w[1:]
		}
		return w
	case x < 0.46:
		return pick(rtContractions)
	case x < 0.54:
		var b strings.Builder
		for range 1 + r.IntN(12) {
			b.WriteByte(byte('0' + r.IntN(10)))
		}
		return b.String()
	case x < 0.64:
		return pick(rtSpaces)
	case x < 0.74:
		var b strings.Builder
		for range 1 + r.IntN(3) {
			b.WriteString(pick(rtPunct))
		}
		return b.String()
	case x < 0.82:
		return pick(rtUnicode)
	case x < 0.87:
		return pick(rtEmoji)
	case x < 0.94:
		var b strings.Builder
		for range 1 + r.IntN(4) {
			b.WriteRune(randRune(r))
		}
		return b.String()
	case x < 0.96:
		return string(rune(1 + r.IntN(31)))
	case x < 0.98 && invalid:
		junk := [][]byte{{byte(0x80 + r.IntN(0x80))}, {0xE2, 0x80}, {0xF0, 0x9F, 0x9F, 0x9F, 0x9F, 0x9F}, {0xC3}, {0xFF}}
		return string(junk[r.IntN(len(junk))])
	}
	return strings.Repeat(string("ae.-_=*#0 "[r.IntN(10)]), 2+r.IntN(29))
}

func randRune(r *rand.Rand) rune {
	for {
		var c rune
		switch x := r.Float64(); {
		case x < 0.5:
			c = rune(0x20 + r.IntN(0x250-0x20))
		case x < 0.8:
			c = rune(0x250 + r.IntN(0x10000-0x250))
		default:
			c = rune(0x10000 + r.IntN(0x20000))
		}
		if c < 0xD800 || c > 0xDFFF {
			return c
		}
	}
}

// randStrings returns n random strings from a fixed seed.
func randStrings(seed uint64, n int, invalid bool) []string {
	r := rand.New(rand.NewPCG(seed, 0x9e3779b97f4a7c15))
	out := make([]string, n)
	for i := range out {
		out[i] = randString(r, invalid)
	}
	return out
}
