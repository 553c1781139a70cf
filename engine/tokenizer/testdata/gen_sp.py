#!/usr/bin/python3
"""SentencePiece BPE reference data for the tokenizer tests.

1. Trains a small SentencePiece BPE model with byte fallback, configured
   like LLaMA-2's (identity normalization, dummy prefix, no whitespace
   squeezing, digits split, whitespace-only pieces allowed) on a synthetic
   corpus made here from a fixed seed.
2. Converts it to a LLaMA-2-style tokenizer.json with sp2hf.py.
3. Encodes 10,000 random strings with SentencePiece itself and writes the
   ids, for the Go test to compare with its own encoding of the
   tokenizer.json.

Needs Debian's python3-sentencepiece (apt-get install python3-sentencepiece).
Run from the repository root:
    /usr/bin/python3 engine/tokenizer/testdata/gen_sp.py
Writes, under engine/tokenizer/testdata/sp_bpe/: tokenizer.model,
tokenizer.json, tokenizer_config.json; and
engine/tokenizer/testdata/sp_bpe_ref.jsonl.gz: one {"s": text, "ids": [...]}
per line (SentencePiece's encode without BOS).
"""

import gzip
import io
import json
import os
import random
import sys

import sentencepiece as spm

HERE = os.path.dirname(os.path.abspath(__file__))
sys.dont_write_bytecode = True  # keep __pycache__ out of the source tree
sys.path.insert(0, HERE)
import randtext  # noqa: E402
import sp2hf  # noqa: E402

OUTDIR = os.path.join(HERE, "sp_bpe")
REF = os.path.join(HERE, "sp_bpe_ref.jsonl.gz")
SEED = 4242
COUNT = 10000
# Strings that are special tokens in the tokenizer.json (Hugging Face
# splits them off before BPE; SentencePiece treats them as text).
SPECIAL = ("<unk>", "<s>", "</s>")


def corpus(rng, lines=30000):
    """Sentences from the test vocabulary plus some other scripts, so that
    the model learns merges in several scripts and keeps rare characters
    out (they go to byte fallback)."""
    words = randtext.WORDS + randtext.UNICODE_WORDS[:16]
    out = []
    for _ in range(lines):
        n = rng.randint(3, 20)
        ws = []
        for _ in range(n):
            r = rng.random()
            if r < 0.85:
                w = rng.choice(words)
            elif r < 0.92:
                w = str(rng.randint(0, 100000))
            else:
                w = rng.choice(randtext.CONTRACTIONS[:10])
            ws.append(w)
        sep = rng.choice([" ", " ", " ", "  ", ", "])
        out.append(sep.join(ws) + rng.choice([".", "!", "?", "", "\t"]))
    return out


def main():
    rng = random.Random(SEED)
    os.makedirs(OUTDIR, exist_ok=True)
    model = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(corpus(rng)),
        model_writer=model,
        model_type="bpe",
        vocab_size=1200,
        byte_fallback=True,
        split_digits=True,
        allow_whitespace_only_pieces=True,
        normalization_rule_name="identity",
        remove_extra_whitespaces=False,
        add_dummy_prefix=True,
        character_coverage=0.999,
        unk_id=0, bos_id=1, eos_id=2, pad_id=-1,
        num_threads=1,
        minloglevel=2,
    )
    model_path = os.path.join(OUTDIR, "tokenizer.model")
    with open(model_path, "wb") as f:
        f.write(model.getvalue())

    tok, config = sp2hf.convert(model_path)
    with open(os.path.join(OUTDIR, "tokenizer.json"), "w", encoding="utf-8") as f:
        json.dump(tok, f, ensure_ascii=False, separators=(",", ":"))
    with open(os.path.join(OUTDIR, "tokenizer_config.json"), "w", encoding="utf-8") as f:
        json.dump(config, f, ensure_ascii=False, indent=2)

    sp = spm.SentencePieceProcessor(model_file=model_path)
    lines = []
    texts = [s for s in randtext.strings(SEED, COUNT + 500, max_items=15, long_items=200)
             if not any(x in s for x in SPECIAL)][:COUNT]
    assert len(texts) == COUNT
    for s in texts:
        lines.append(json.dumps({"s": s, "ids": sp.encode(s)},
                                ensure_ascii=False, separators=(",", ":")))
    with open(REF, "wb") as raw:
        with gzip.GzipFile(fileobj=raw, mode="wb", mtime=0) as f:
            f.write(("\n".join(lines) + "\n").encode("utf-8"))
    print("wrote", OUTDIR, "and", REF, len(lines), "strings")


if __name__ == "__main__":
    main()
