package textdata

import (
	"fmt"
	"os"

	"github.com/gotune/gotune/engine/data"
	"github.com/gotune/gotune/engine/tokenizer"
)

// openText reads plain text — JSONL records with "text", or a whole .txt
// file as one document — and packs it into blocks of opts.SeqLen tokens,
// as Hugging Face's causal-LM recipe does: each document becomes
// [BOS] text [EOS] (each where the tokenizer has one), the documents are
// concatenated, and the stream is cut into blocks. A final block shorter
// than SeqLen is kept if it has at least two tokens. Every token is
// trained on. Documents longer than a block simply continue in the next
// one, so nothing is truncated.
func openText(path string, opts Options) (*data.Dataset, error) {
	if opts.SeqLen < 2 {
		return nil, fmt.Errorf("%s: packing text needs a sequence length of at least 2, got %d", path, opts.SeqLen)
	}
	tok := opts.Tokenizer
	var stream []int32
	var starts []int // stream offset where each document begins
	var locs []data.Loc
	add := func(loc data.Loc, text string) error {
		ids, err := tok.Encode(text, false)
		if err != nil {
			return data.Errorf(loc, "%v", err)
		}
		starts = append(starts, len(stream))
		locs = append(locs, loc)
		if b := tok.BOS(); b != tokenizer.NoToken {
			stream = append(stream, int32(b))
		}
		for _, id := range ids {
			stream = append(stream, int32(id))
		}
		if e := tok.EOS(); e != tokenizer.NoToken {
			stream = append(stream, int32(e))
		}
		return nil
	}
	if isTxt(path) {
		raw, err := os.ReadFile(path)
		if err != nil {
			return nil, fmt.Errorf("data file: %w", err)
		}
		if len(raw) == 0 {
			return nil, data.Errorf(data.Loc{File: path}, "no text (the file is empty)")
		}
		if err := data.CheckUTF8(path, raw); err != nil {
			return nil, err
		}
		if err := add(data.Loc{File: path}, string(raw)); err != nil {
			return nil, err
		}
	} else {
		err := data.ReadRecords(path, func(r data.Record) error {
			if err := data.UnknownFields(r, []string{"text"}, `a text line has only "text"`); err != nil {
				return err
			}
			text, err := stringValue(r.Loc, "text", r.Fields["text"], true)
			if err != nil {
				return err
			}
			if text == "" {
				return data.Errorf(r.Loc, `"text" is empty`)
			}
			return add(r.Loc, text)
		})
		if err != nil {
			return nil, err
		}
		if len(locs) == 0 {
			return nil, data.Errorf(data.Loc{File: path}, "no examples (the file is empty)")
		}
	}
	ds := &data.Dataset{Name: path, Format: Text}
	doc := 0
	for at := 0; at < len(stream); at += opts.SeqLen {
		end := min(at+opts.SeqLen, len(stream))
		if end-at < 2 {
			break
		}
		for doc+1 < len(starts) && starts[doc+1] <= at {
			doc++
		}
		ids := stream[at:end:end]
		ex := data.Example{InputIDs: ids, Labels: ids, Loc: locs[doc]}
		if err := ex.Validate(opts.VocabSize); err != nil {
			return nil, err
		}
		ds.Examples = append(ds.Examples, ex)
	}
	if len(ds.Examples) == 0 {
		return nil, data.Errorf(data.Loc{File: path}, "the text is a single token; nothing to train on")
	}
	return ds, nil
}
