package generate_test

import (
	"context"
	"fmt"
	"slices"

	"github.com/gotune/gotune/engine/cpu"
	"github.com/gotune/gotune/engine/generate"
	"github.com/gotune/gotune/engine/model"
	"github.com/gotune/gotune/engine/tokenizer"
)

// Greedy generation with the demo model and its tokenizer: the prompt
// is laid out as the demo model was trained ("<s>instruction\ninput\n"),
// generation stops at </s>, and the key/value cache gives the tokens
// that recomputing the whole sequence for every token gives.
func ExampleGenerate() {
	m, err := model.Load("../../testdata/demo", cpu.New())
	if err != nil {
		panic(err)
	}
	tok, err := tokenizer.LoadHF("../../testdata/demo/tokenizer.json")
	if err != nil {
		panic(err)
	}
	prompt, err := generate.PromptIDs(tok, "Copy the letters.\nhello\n")
	if err != nil {
		panic(err)
	}
	opts := generate.Options{MaxNewTokens: 16, Stop: []int32{int32(tok.EOS())}}
	res, err := generate.Generate(context.Background(), m, prompt, opts)
	if err != nil {
		panic(err)
	}
	text := tok.Decode(generate.Ints(res.Tokens))
	fmt.Printf("%q (%d tokens, stopped by %s)\n", text, len(res.Tokens), res.Reason)

	opts.NoCache = true
	ref, err := generate.Generate(context.Background(), m, prompt, opts)
	if err != nil {
		panic(err)
	}
	fmt.Println("cache gives the uncached tokens:", slices.Equal(res.Tokens, ref.Tokens))
	// Output:
	// "hello" (5 tokens, stopped by stop)
	// cache gives the uncached tokens: true
}
