#!/usr/bin/python3
"""Convert a SentencePiece BPE model to a LLaMA-2-style tokenizer.json.

Written for the tokenizer tests from the rules Hugging Face's converter
(transformers' LlamaConverter with SentencePieceExtractor) follows:

  * vocabulary: every piece with its id (control, byte and normal pieces);
  * merges: for every piece, every split into two pieces that are both in
    the vocabulary, ordered by the piece's score, highest first (splits of
    one piece by the ids of their left, then right, halves; pieces of equal
    score by id);
  * model: BPE with unk_token "<unk>", fuse_unk, byte_fallback;
  * normalizer: Prepend "▁" then Replace " " -> "▁" (SentencePiece's
    add_dummy_prefix and whitespace escaping); no pre-tokenizer;
  * decoder: Replace "▁" -> " ", ByteFallback, Fuse, Strip one leading " ";
  * post-processor: "<s> $A" (add_bos_token); <unk>, <s>, </s> as special
    added tokens.

It uses only the sentencepiece Python API (no protobuf) and the standard
library.

Usage: sp2hf.py MODEL OUTDIR   (writes OUTDIR/tokenizer.json and
OUTDIR/tokenizer_config.json)
"""

import json
import os
import sys

import sentencepiece as spm


def convert(model_path):
    sp = spm.SentencePieceProcessor(model_file=model_path)
    n = sp.get_piece_size()
    pieces = [sp.id_to_piece(i) for i in range(n)]
    scores = [sp.get_score(i) for i in range(n)]
    vocab = {p: i for i, p in enumerate(pieces)}
    unk, bos, eos = sp.unk_id(), sp.bos_id(), sp.eos_id()

    merges = []  # (score, id of merged piece, id left, id right, left, right)
    for i, p in enumerate(pieces):
        for k in range(1, len(p)):
            left, right = p[:k], p[k:]
            if left in vocab and right in vocab:
                merges.append((scores[i], i, vocab[left], vocab[right], left, right))
    # Highest score first; Python's sort is stable, so equal scores keep
    # piece order, and one piece's splits are ordered by (left id, right id).
    merges.sort(key=lambda m: (m[1], m[2], m[3]))
    merges.sort(key=lambda m: -m[0])

    def special(i):
        return {"id": i, "content": pieces[i], "single_word": False,
                "lstrip": False, "rstrip": False, "normalized": False,
                "special": True}

    tok = {
        "version": "1.0",
        "truncation": None,
        "padding": None,
        "added_tokens": [special(unk), special(bos), special(eos)],
        "normalizer": {"type": "Sequence", "normalizers": [
            {"type": "Prepend", "prepend": "▁"},
            {"type": "Replace", "pattern": {"String": " "}, "content": "▁"}]},
        "pre_tokenizer": None,
        "post_processor": {
            "type": "TemplateProcessing",
            "single": [{"SpecialToken": {"id": pieces[bos], "type_id": 0}},
                       {"Sequence": {"id": "A", "type_id": 0}}],
            "pair": [{"SpecialToken": {"id": pieces[bos], "type_id": 0}},
                     {"Sequence": {"id": "A", "type_id": 0}},
                     {"SpecialToken": {"id": pieces[bos], "type_id": 1}},
                     {"Sequence": {"id": "B", "type_id": 1}}],
            "special_tokens": {pieces[bos]: {"id": pieces[bos], "ids": [bos],
                                             "tokens": [pieces[bos]]}}},
        "decoder": {"type": "Sequence", "decoders": [
            {"type": "Replace", "pattern": {"String": "▁"}, "content": " "},
            {"type": "ByteFallback"},
            {"type": "Fuse"},
            {"type": "Strip", "content": " ", "start": 1, "stop": 0}]},
        "model": {
            "type": "BPE", "dropout": None, "unk_token": pieces[unk],
            "continuing_subword_prefix": None, "end_of_word_suffix": None,
            "fuse_unk": True, "byte_fallback": True, "ignore_merges": False,
            "vocab": vocab,
            "merges": [[m[4], m[5]] for m in merges]},
    }
    config = {
        "add_bos_token": True,
        "add_eos_token": False,
        "bos_token": {"__type": "AddedToken", "content": pieces[bos],
                      "lstrip": False, "normalized": False, "rstrip": False,
                      "single_word": False},
        "eos_token": pieces[eos],
        "unk_token": pieces[unk],
        "pad_token": None,
        "legacy": True,
        "tokenizer_class": "LlamaTokenizer",
        "chat_template": "{% for m in messages %}{{ m['content'] }}{% endfor %}",
    }
    return tok, config


def main():
    model, outdir = sys.argv[1], sys.argv[2]
    tok, config = convert(model)
    os.makedirs(outdir, exist_ok=True)
    with open(os.path.join(outdir, "tokenizer.json"), "w", encoding="utf-8") as f:
        json.dump(tok, f, ensure_ascii=False, separators=(",", ":"))
    with open(os.path.join(outdir, "tokenizer_config.json"), "w", encoding="utf-8") as f:
        json.dump(config, f, ensure_ascii=False, indent=2)


if __name__ == "__main__":
    main()
