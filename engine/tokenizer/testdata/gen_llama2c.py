#!/usr/bin/python3
"""Reference encodings for the llama2.c tokenizer (stories260K's tok512.bin).

An implementation of the llama2.c tokenizer written from the format's
description (the stories260K README) and llama2.c's run.c conventions, kept
deliberately naive (a full rescan of all adjacent pairs per merge) so that
it shares no structure with the Go code (a heap over a linked list):

  * file: int32 max_token_length, then per token float32 score, int32
    length, bytes;
  * encode: optional BOS (id 1), then the dummy-prefix token " " (if the
    text is not empty), then each UTF-8 character -- a byte followed by its
    continuation bytes, at most 4 bytes -- as the token spelled by those
    bytes, or else one <0xAB> token per byte;
  * then, repeatedly, merge the adjacent pair whose concatenated string is a
    token with the highest score (the first such pair on ties; only scores
    above -1e10 count), until no pair merges.

Run from the repository root:
    /usr/bin/python3 engine/tokenizer/testdata/gen_llama2c.py
It writes engine/tokenizer/testdata/llama2c_tok512_ref.jsonl.gz: one JSON
object per line, {"hex": input bytes in hex, "bos": bool, "ids": [...]}.
"""

import gzip
import json
import os
import random
import struct
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.dont_write_bytecode = True  # keep __pycache__ out of the source tree
sys.path.insert(0, HERE)
import randtext  # noqa: E402

TOK = os.path.join(HERE, "..", "..", "..", "..", "shared", "models",
                   "stories260K", "tok512.bin")
OUT = os.path.join(HERE, "llama2c_tok512_ref.jsonl.gz")
COUNT = 10000
SEED = 20240601


def load(path):
    data = open(path, "rb").read()
    (max_len,) = struct.unpack_from("<i", data, 0)
    off = 4
    pieces, scores = [], []
    while off < len(data):
        score, n = struct.unpack_from("<fi", data, off)
        off += 8
        pieces.append(data[off:off + n])
        scores.append(score)
        off += n
    return pieces, scores


class Llama2C:
    def __init__(self, path):
        self.pieces, self.scores = load(path)
        self.index = {}
        for i, p in enumerate(self.pieces):
            self.index.setdefault(p, i)

    def encode(self, text, bos):
        toks = [1] if bos else []
        if text:
            toks.append(self.index[b" "])
        i = 0
        while i < len(text):
            j = i + 1
            while j < len(text) and (text[j] & 0xC0) == 0x80 and j - i < 4:
                j += 1
            ch = text[i:j]
            if ch in self.index:
                toks.append(self.index[ch])
            else:
                for b in ch:
                    toks.append(self.index[b"<0x%02X>" % b])
            i = j
        while True:
            best, best_id, best_i = -1e10, -1, -1
            for k in range(len(toks) - 1):
                cat = self.pieces[toks[k]] + self.pieces[toks[k + 1]]
                tid = self.index.get(cat)
                if tid is not None and self.scores[tid] > best:
                    best, best_id, best_i = self.scores[tid], tid, k
            if best_i < 0:
                break
            toks[best_i:best_i + 2] = [best_id]
        return toks


def mangle(rng, s):
    """Turn a random string into bytes, sometimes with invalid UTF-8."""
    b = bytearray(s.encode("utf-8"))
    if rng.random() < 0.3:
        for _ in range(rng.randint(1, 4)):
            pos = rng.randint(0, len(b))
            kind = rng.random()
            if kind < 0.3:
                junk = bytes([rng.randrange(0x80, 0x100)])
            elif kind < 0.5:
                junk = bytes([rng.randrange(0xC2, 0xF5)])  # a lead byte alone
            elif kind < 0.7:
                junk = bytes([0xE2, 0x80])  # a truncated 3-byte character
            elif kind < 0.85:
                junk = bytes([0xF0] + [0x9F] * rng.randint(1, 7))  # long run
            else:
                junk = bytes([rng.randrange(0, 0x20)])  # control, incl. NUL
            b[pos:pos] = junk
    return bytes(b)


def main():
    tok = Llama2C(TOK)
    rng = random.Random(SEED)
    texts = randtext.strings(SEED, COUNT, max_items=12, long_items=200)
    # Text close to what the model was trained on, so long merges happen.
    story = (b"Once upon a time, there was a little girl named Lily. She "
             b"loved to play outside in the park. One day, she saw a big, "
             b"red ball.")
    lines = []
    for i, s in enumerate(texts):
        data = story[:rng.randint(0, len(story))] if i % 10 == 0 else mangle(rng, s)
        bos = rng.random() < 0.8
        ids = tok.encode(data, bos)
        lines.append(json.dumps({"hex": data.hex(), "bos": bos, "ids": ids},
                                separators=(",", ":")))
    with open(OUT, "wb") as raw:
        with gzip.GzipFile(fileobj=raw, mode="wb", mtime=0) as f:
            f.write(("\n".join(lines) + "\n").encode())
    print("wrote", OUT, len(lines), "strings")


if __name__ == "__main__":
    main()
