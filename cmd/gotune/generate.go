package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/gotune/gotune/engine"
	"github.com/gotune/gotune/engine/chat"
	"github.com/gotune/gotune/engine/generate"
	"github.com/gotune/gotune/engine/tokenizer"
)

func init() {
	register(&command{
		Name:    "generate",
		Summary: "generate text from a model (greedy or sampled, with a KV cache)",
		Run:     runGenerate,
	})
}

const generateDescription = `
Continues a prompt with a model and prints the text as it is generated.

Without --template the prompt is raw text: it is tokenized as the model's
tokenizer starts a sequence (e.g. with BOS) and the output is the prompt
followed by its continuation, as llama2.c prints it. With --template the
prompt is a user message laid out with that chat template (and --system,
if given) exactly as gotune train lays out training data, and only the
reply is printed.

Decoding uses the model's key/value cache: each new token costs one forward
pass over that token alone. --temperature 0 is greedy decoding (the most
likely token every time); otherwise tokens are sampled after dividing the
logits by the temperature and keeping the --top-k most likely tokens and
the smallest set of them whose probability reaches --top-p, from a
generator seeded with --seed. Generation stops at the end-of-sequence
token (and the template's end-of-turn token), after --max-new-tokens, or
at the model's maximum length. Statistics go to stderr.`

func runGenerate(ctx context.Context, e *env, args []string) error {
	fs := newFlagSet("generate", "gotune generate --model PATH [--tokenizer PATH] [--adapter DIR] --prompt TEXT [flags]", generateDescription)
	modelPath := fs.String("model", "", modelPathHelp+" (required)")
	tokPath := fs.String("tokenizer", "", "tokenizer `PATH`: tokenizer.json, a folder holding one, or a llama2.c tokenizer.bin (default: the one with the model)")
	adapter := fs.String("adapter", "", "adapter `DIR` to apply (written by gotune train with a parameter-efficient --method)")
	prompt := fs.String("prompt", "", "the prompt `TEXT` (empty: start from BOS)")
	template := fs.String("template", "", "lay the prompt out as a user message with this chat template: auto (the model's own chat_template, rendered with add_generation_prompt as transformers does), a template `FILE`.jinja, or "+strings.Join(chat.Names(), ", ")+"; empty: raw text")
	system := fs.String("system", "", "system message (with --template)")
	maxNew := fs.Int("max-new-tokens", 256, "most tokens to generate")
	temperature := fs.Float64("temperature", 0, "sampling temperature; 0 = greedy")
	topK := fs.Int("top-k", 0, "sample among the K most likely tokens only (0: all)")
	topP := fs.Float64("top-p", 1, "sample among the most likely tokens whose probability reaches P (1: all)")
	seed := fs.Uint64("seed", 42, "random seed of the sampler")
	device := fs.String("device", "auto", deviceHelp)
	precision := fs.String("precision", "auto", precisionHelp)
	printIDs := fs.Bool("print-ids", false, "print one JSON line {prompt_ids, ids, text} (the prompt's token ids, the generated ids and their text) instead of streaming text; scripts compare runs with it")
	if err := parseFlags(fs, args, e); err != nil {
		if errors.Is(err, errHelp) {
			return nil
		}
		return err
	}
	if *modelPath == "" {
		return &usageError{msg: "--model is required"}
	}
	if *system != "" && *template == "" {
		return &usageError{msg: "--system needs --template (a raw prompt has no place for a system message)"}
	}
	opts := generate.Options{MaxNewTokens: *maxNew, Temperature: *temperature, TopK: *topK, TopP: *topP, Seed: *seed}
	if err := opts.Validate(); err != nil {
		return fieldUsageError(err, nil, generateOptionFlags)
	}
	if !validDevice(*device) {
		return &usageError{msg: fmt.Sprintf("unknown --device %q (want auto, cpu, cuda or cuda:N)", *device)}
	}
	if err := checkPrecision(*precision); err != nil {
		return err
	}
	tok, err := loadTokenizer(*tokPath, *modelPath)
	if err != nil {
		return err
	}
	var tmpl chat.Template
	var ids []int32
	if *template == "" {
		if ids, err = generate.PromptIDs(tok, *prompt); err != nil {
			return fmt.Errorf("--prompt: %w", err)
		}
	} else {
		var note string
		if tmpl, note, err = chooseTemplate(*template, tok); err != nil {
			return err
		}
		fmt.Fprintln(e.Stderr, note)
		if err := chat.Check(tmpl, tok); err != nil {
			return err
		}
		var msgs []chat.Message
		if *system != "" {
			msgs = append(msgs, chat.Message{Role: chat.System, Content: *system})
		}
		msgs = append(msgs, chat.Message{Role: chat.User, Content: *prompt})
		pieces, err := tmpl.Prompt(msgs)
		if err != nil {
			return fmt.Errorf("chat template %s: %w", tmpl.Name(), err)
		}
		if ids, _, err = chat.Encode(tok, pieces); err != nil {
			return fmt.Errorf("--prompt: %w", err)
		}
	}
	opts.Stop = chat.StopIDs(tmpl, tok)

	be, err := openDevice(*device, func(string) {})
	if err != nil {
		return err
	}
	defer be.Close()
	prec, _ := engine.ParsePrecision(*precision, onGPU(be))
	m, err := loadModel(*modelPath, be, prec)
	if err != nil {
		return err
	}
	if err := checkVocab(tok, m); err != nil {
		return err
	}
	if *adapter != "" {
		if err := loadAdapter(m, *adapter); err != nil {
			return err
		}
	}
	if err := inferencePrecision(m, prec); err != nil {
		return err
	}

	// Stream: decode the whole text so far and print what was added (some
	// decoders change a token's text depending on what precedes it).
	out := e.Stdout
	if *printIDs {
		out = io.Discard
	}
	st := &streamer{w: out, tok: tok}
	if tmpl == nil {
		st.ids = append(st.ids, ids...)
	}
	opts.OnToken = func(id int32) error {
		st.ids = append(st.ids, id)
		return st.flush(false)
	}
	start := time.Now()
	if err := st.flush(false); err != nil {
		return err
	}
	res, err := generate.Generate(ctx, m, ids, opts)
	if res != nil {
		if ferr := st.flush(true); ferr != nil && err == nil {
			err = ferr
		}
		fmt.Fprintln(out)
	}
	if err == nil && *printIDs {
		err = json.NewEncoder(e.Stdout).Encode(map[string]any{"prompt_ids": ids, "ids": res.Tokens, "text": tok.Decode(generate.Ints(res.Tokens))})
	}
	if err != nil {
		if errors.Is(err, context.Canceled) {
			return errInterrupted
		}
		return err
	}
	elapsed := time.Since(start)
	fmt.Fprintf(e.Stderr, "%d prompt tokens, %d new tokens in %s (%.1f tokens/s), stopped: %s\n",
		len(ids), len(res.Tokens), elapsed.Round(time.Millisecond), float64(len(res.Tokens))/elapsed.Seconds(), stopWord(res.Reason))
	return nil
}

func stopWord(reason string) string {
	switch reason {
	case generate.StopToken:
		return "end-of-sequence token"
	case generate.StopContext:
		return "the model's maximum length"
	default:
		return "--max-new-tokens"
	}
}

// streamer prints the decoded text of ids incrementally.
type streamer struct {
	w       io.Writer
	tok     tokenizer.Tokenizer
	ids     []int32
	printed int
}

// flush prints the text decoded since the last flush. Unless final, a
// trailing incomplete UTF-8 character is held back until its remaining
// bytes arrive in later tokens.
func (s *streamer) flush(final bool) error {
	text := s.tok.Decode(generate.Ints(s.ids))
	if len(text) < s.printed {
		return nil // a decoder dropped text it had shown; keep what is printed
	}
	end := len(text)
	if !final {
		for k := 0; k < utf8.UTFMax && end > s.printed && !utf8.ValidString(text[s.printed:end]); k++ {
			end--
		}
		if !utf8.ValidString(text[s.printed:end]) {
			end = len(text)
		}
	}
	if end <= s.printed {
		return nil
	}
	_, err := io.WriteString(s.w, text[s.printed:end])
	s.printed = end
	return err
}
