"""Random and adversarial test strings for the tokenizer reference scripts.

Shared by gen_llama2c.py and gen_sp.py. Deterministic for a given seed.
The Go tests have their own generator (randtext_test.go) for the checks
that run at test time.
"""

import random

WORDS = """the a an and to of in is was it he she they we you I that his her
their with for on at by from up out down over under again once upon time
there little girl boy named Lily Tim Timmy Ben Sue mom dad friend friends
happy sad big small red blue green ball tree park sun dog cat bird fish play
played playing saw said wanted loved went came look looked very so but not
one day all what when where who why how can could would should will shall
may might must do did does done have has had be been being are were am
hello world token tokenizer encoder decoder model train fine tune data
Hugging Face LLaMA Mistral Qwen GPT byte level pair encoding merge rank
""".split()

CONTRACTIONS = ["don't", "it's", "I'm", "you're", "we've", "they'll", "he'd",
                "IT'S", "DON'T", "You'RE", "we'VE", "They'LL", "i'M", "she'D",
                "it’s", "'s", "'t", "'re", "'ve", "'m", "'ll", "'d", "'S",
                "'ſ", "ſ", "''s", "'''", "x'", "'x", "O'Neil", "rock'n'roll"]

UNICODE_WORDS = ["café", "naïve", "résumé", "Привет", "мир", "Γειά", "σου",
                 "中文", "日本語", "ひらがな", "カタカナ", "한국어", "مرحبا",
                 "שלום", "हिन्दी", "ภาษาไทย", "Ελληνικά", "straße", "ǅungla",
                 "İstanbul", "Ⅻ", "½", "²³", "٣٤٥", "१२३", "ＡＢＣ", "ﬁ",
                 "e\u0301", "a\u0308o\u0308", "\u0301", "Z̤͔ͧ̑̓ä͖̭̈̇lͮ̒ͫǧ̗͚̚o̙̔ͮ̇͐̇",
                 "“quoted”", "‘single’", "–", "—", "…", "€", "™", "é", "ñ", "â"]

EMOJI = ["😀", "👍", "👍🏽", "👨‍👩‍👧‍👦", "🇺🇸", "❤️", "🤖", "🎉🎉", "🙂🙃",
         "🧑🏿‍🚀", "\u200d", "\ufe0f"]

SPACES = [" ", "  ", "   ", "\t", "\n", "\r", "\r\n", "\n\n", "\u00a0",
          "\u3000", "\u2028", "\x0b", "\x0c", "\x85", " \n ", "\t\t",
          "      ", "\u2009", "\u200a"]

PUNCT = list(".,!?;:'\"-()[]{}<>/\\|@#$%^&*_+=~`") + [
    "...", "?!", "--", "->", "=>", "::", "//", "/*", "*/", "<|", "|>",
    "<0x41>", "<0xZZ>", "▁", "▁▁", "Ġ", "Ċ"]

FIXED = ["", " ", "  ", "\n", "a", "ab", "abc", "a" * 40, " " * 17,
         "\n" * 9, "1234567890" * 4, "   leading", "trailing   ",
         " \n \n", "x's", "'s'", "Hello, World!", "Once upon a time",
         "\t\tindented\n", "a b  c   d    e", "🙂" * 5, "é" * 9,
         "The year 2024 had 366 days.", "3.14159", "1,000,000",
         "ſs'ſ", "\r\n\r\n", "end.\n"]


def rand_codepoint(rng):
    while True:
        r = rng.random()
        if r < 0.5:
            c = rng.randrange(0x20, 0x250)
        elif r < 0.8:
            c = rng.randrange(0x250, 0x10000)
        else:
            c = rng.randrange(0x10000, 0x30000)
        if not (0xD800 <= c <= 0xDFFF):
            return chr(c)


def rand_item(rng):
    r = rng.random()
    if r < 0.40:
        w = rng.choice(WORDS)
        if rng.random() < 0.1:
            w = w.upper()
        elif rng.random() < 0.1:
            w = w.capitalize()
        return w
    if r < 0.47:
        return rng.choice(CONTRACTIONS)
    if r < 0.55:
        return "".join(rng.choice("0123456789") for _ in range(rng.randint(1, 12)))
    if r < 0.65:
        return rng.choice(SPACES)
    if r < 0.75:
        return "".join(rng.choice(PUNCT) for _ in range(rng.randint(1, 3)))
    if r < 0.83:
        return rng.choice(UNICODE_WORDS)
    if r < 0.88:
        return rng.choice(EMOJI)
    if r < 0.95:
        return "".join(rand_codepoint(rng) for _ in range(rng.randint(1, 4)))
    if r < 0.97:
        return chr(rng.randrange(1, 0x20))
    # a run of one repeated character
    return rng.choice("a e.-_=*#0 ") * rng.randint(2, 30)


def rand_string(rng, max_items=25, long_items=400):
    """One random string: a mix of words, numbers, spaces, symbols.

    Most have 1..max_items items; one in a hundred is long (up to
    long_items items)."""
    r = rng.random()
    if r < 0.02:
        return rng.choice(FIXED)
    n = rng.randint(1, max_items) if r < 0.99 else rng.randint(long_items // 4, long_items)
    out = []
    for _ in range(n):
        out.append(rand_item(rng))
        if rng.random() < 0.6:
            out.append(" ")
    return "".join(out)


def strings(seed, count, max_items=25, long_items=400):
    rng = random.Random(seed)
    return [rand_string(rng, max_items, long_items) for _ in range(count)]
