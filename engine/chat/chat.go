// Package chat lays conversations out as model input: the chat templates
// (plain, alpaca, llama2, llama3, chatml/qwen) that turn messages into the
// token sequence a model is trained and prompted with, and which of those
// tokens are the model's reply.
//
// A template renders a conversation into Pieces: text, or the tokenizer's
// BOS/EOS token, each marked as trained (part of an assistant reply) or
// not. Encode tokenizes pieces one by one, so the label mask is exact by
// construction: prompt tokens get label -100, reply tokens their own id,
// and no BPE merge can straddle the boundary between prompt and reply.
// Training (Render) and generation (Prompt) produce the same pieces for
// the same prompt, so a fine-tuned model is prompted exactly as it was
// trained.
//
// A model's own Jinja chat_template (tokenizer_config.json) or a .jinja
// file is rendered as transformers renders it (Jinja, package jinja),
// and its labels are derived from the rendered text; the built-in
// templates are for models without one.
package chat

import (
	"bytes"
	"encoding/json"
	"fmt"
	"sort"
	"strings"

	"github.com/gotune/gotune/engine/tokenizer"
)

// Roles of a message.
const (
	System    = "system"
	User      = "user"
	Assistant = "assistant"
	// Tool is a tool's output (only templates of models with tool calls
	// lay it out).
	Tool = "tool"
)

// IgnoreIndex is the label of a position that is not trained on (Hugging
// Face's -100).
const IgnoreIndex = -100

// Message is one turn of a conversation. A model's own template sees it
// as transformers passes a message: a dict with the keys role and
// content, plus reasoning_content, tool_calls, tool_call_id and name when
// they are set (a template tests "is defined" on them).
type Message struct {
	// Role is System, User, Assistant or Tool.
	Role string
	// Content is the text of the turn.
	Content string
	// NullContent makes the template see content as None rather than
	// Content (OpenAI's form of an assistant message that only calls
	// tools has "content": null, which some templates test for).
	NullContent bool
	// Reasoning is an assistant message's reasoning (its thinking before
	// the reply). Only templates of reasoning models (Qwen3) show it, as
	// the message's reasoning_content; the others leave it out.
	Reasoning string
	// ToolCalls is an assistant message's tool_calls, JSON as the data
	// holds it (OpenAI's form: a list of {"id", "type": "function",
	// "function": {"name", "arguments"}}), handed to the template as it is
	// (arguments stay a string or an object, keys keep their order).
	ToolCalls json.RawMessage
	// ToolCallID is a tool message's tool_call_id: the call it answers.
	ToolCallID string
	// Name is the message's name (a tool message's tool, in OpenAI's
	// form).
	Name string
	// Input is the "input" field of an instruction-format record, set on
	// the user message built from it (see FromInstruction). Templates with
	// a slot for it (alpaca) show it there; the others append it to
	// Content after a separator (a newline for plain, a blank line for the
	// rest), so an empty Input changes nothing.
	Input string
}

// FromInstruction builds the conversation of an instruction-format record:
// an optional system message, the instruction (with its input) as the
// user message, and the output as the assistant's reply. An empty system
// adds no system message.
func FromInstruction(system, instruction, input, output string) []Message {
	var msgs []Message
	if system != "" {
		msgs = append(msgs, Message{Role: System, Content: system})
	}
	return append(msgs,
		Message{Role: User, Content: instruction, Input: input},
		Message{Role: Assistant, Content: output})
}

// Special says whether a Piece is text or one of the tokenizer's special
// tokens.
type Special uint8

const (
	// Text is a piece of text, tokenized without added special tokens.
	Text Special = iota
	// BOS is the tokenizer's beginning-of-sequence token (left out when the
	// tokenizer has none).
	BOS
	// EOS is the tokenizer's end-of-sequence token (left out when the
	// tokenizer has none).
	EOS
)

// Piece is one span of a rendered conversation.
type Piece struct {
	// Text is the text (empty for BOS and EOS).
	Text string
	// Special is Text for text, else the special token the piece stands for.
	Special Special
	// Train marks pieces of assistant replies: their tokens are labels.
	Train bool
}

// Template is a chat template: a way of laying out a conversation.
type Template interface {
	// Name is the template's --template name.
	Name() string
	// Render lays out a whole conversation for training. It must end with
	// an assistant message; the pieces of every assistant message (and the
	// end-of-turn token after it) are marked Train.
	Render(msgs []Message) ([]Piece, error)
	// Prompt lays out a conversation that ends with a user message, then
	// the start of the assistant's reply: what a model is given to generate
	// that reply. It equals Render's pieces up to the reply.
	Prompt(msgs []Message) ([]Piece, error)
	// StopTokens lists token strings, besides the tokenizer's EOS, that end
	// a reply (e.g. "<|im_end|>").
	StopTokens() []string
	// Markers lists the special-token strings the template writes, each of
	// which the tokenizer must encode as one token (see Check).
	Markers() []string
}

// Names lists the templates Lookup accepts.
func Names() []string {
	names := make([]string, 0, len(templates)+1)
	for n := range templates {
		names = append(names, n)
	}
	names = append(names, "qwen")
	sort.Strings(names)
	return names
}

// Lookup returns the template with the given name ("qwen" is an alias of
// "chatml").
func Lookup(name string) (Template, error) {
	if name == "qwen" {
		name = "chatml"
	}
	if t, ok := templates[strings.ToLower(name)]; ok {
		return t, nil
	}
	return nil, fmt.Errorf("unknown chat template %q (known: %s)", name, strings.Join(Names(), ", "))
}

// TemplateSource names the chat template a tokenizer_config.json holds,
// in messages.
const TemplateSource = "tokenizer_config.json chat_template"

// Default returns the template for a model with tokenizer tok: its own
// chat template (tokenizer_config.json), rendered as transformers renders
// it, else plain. note explains the choice in one line for the user. A
// chat template that does not parse is an error naming the problem.
// option is what the note and the error call the setting that chooses
// another template (the gotune CLI: "--template").
func Default(tok tokenizer.Tokenizer, option string) (t Template, note string, err error) {
	src := ""
	if tok != nil {
		src = tok.ChatTemplate()
	}
	if src != "" {
		j, err := NewJinja(TemplateSource, src, tok)
		if err != nil {
			return nil, "", fmt.Errorf("%w (choose a built-in template with %s %s)", err, option, strings.Join(Names(), "|"))
		}
		return j, "chat template: the model's own (" + TemplateSource + ")", nil
	}
	t, _ = Lookup("plain")
	return t, "chat template plain (the tokenizer has no chat_template; choose another with " + option + ")", nil
}

// Resolve returns the template the setting option (named so in notes and
// errors) names: "auto" (or "") for Default, a built-in name, or a .jinja
// file.
func Resolve(name string, tok tokenizer.Tokenizer, option string) (t Template, note string, err error) {
	switch {
	case name == "" || name == "auto":
		return Default(tok, option)
	case IsFile(name):
		j, err := LoadJinjaFile(name, tok)
		if err != nil {
			return nil, "", err
		}
		return j, "chat template " + name + " (" + option + ")", nil
	}
	if t, err = Lookup(name); err != nil {
		return nil, "", err
	}
	return t, "chat template " + t.Name() + " (" + option + ")", nil
}

// WithTools returns t set to render a conversation whose tools (the
// tool definitions it may call: a JSON list, transformers' tools
// argument) are tools; empty tools return t. Only a model's own template
// can show tool definitions: tools with a built-in template are an error.
func WithTools(t Template, tools json.RawMessage) (Template, error) {
	if len(bytes.TrimSpace(tools)) == 0 {
		return t, nil
	}
	if j, ok := t.(*Jinja); ok {
		return j.WithTools(tools)
	}
	return nil, fmt.Errorf("chat template %s has no place for tool definitions; use the model's own chat template (template auto or a .jinja file)", t.Name())
}

// IsFile reports whether a template setting names a template file rather
// than a built-in template.
func IsFile(name string) bool {
	return strings.HasSuffix(name, ".jinja") || strings.HasSuffix(name, ".j2") || strings.ContainsRune(name, '/')
}

// Check reports whether tok can be used with t: every marker the template
// writes must encode to a single token, or the model could not tell the
// template's structure from text (and would never emit a stop token).
func Check(t Template, tok tokenizer.Tokenizer) error {
	for _, m := range t.Markers() {
		ids, err := tok.Encode(m, false)
		if err != nil || len(ids) != 1 {
			return fmt.Errorf("chat template %s writes %s, which is not a token of this tokenizer (it encodes to %d tokens); use a template made for this model, e.g. plain or alpaca", t.Name(), m, len(ids))
		}
	}
	return nil
}

// StopIDs returns the token ids that end a reply under template t with
// tokenizer tok: the tokenizer's EOS and the template's stop tokens that
// the tokenizer has. t may be nil (EOS only).
func StopIDs(t Template, tok tokenizer.Tokenizer) []int32 {
	var ids []int32
	if e := tok.EOS(); e != tokenizer.NoToken {
		ids = append(ids, int32(e))
	}
	if t != nil {
		for _, s := range t.StopTokens() {
			if id, ok := tok.TokenToID(s); ok {
				ids = append(ids, int32(id))
			}
		}
	}
	return ids
}

// Encode tokenizes pieces one by one and returns the token ids and their
// labels: each trained token's own id, IgnoreIndex for the others. BOS and
// EOS pieces become the tokenizer's tokens, or nothing when it has none.
func Encode(tok tokenizer.Tokenizer, pieces []Piece) (ids, labels []int32, err error) {
	for _, p := range pieces {
		var toks []int
		switch p.Special {
		case BOS:
			if b := tok.BOS(); b != tokenizer.NoToken {
				toks = []int{b}
			}
		case EOS:
			if e := tok.EOS(); e != tokenizer.NoToken {
				toks = []int{e}
			}
		default:
			if p.Text == "" {
				continue
			}
			if toks, err = tok.Encode(p.Text, false); err != nil {
				return nil, nil, err
			}
		}
		for _, id := range toks {
			ids = append(ids, int32(id))
			if p.Train {
				labels = append(labels, int32(id))
			} else {
				labels = append(labels, IgnoreIndex)
			}
		}
	}
	return ids, labels, nil
}

// String joins the pieces' text, writing BOS and EOS as "<BOS>" and
// "<EOS>" and reply pieces between ⟦ and ⟧: a readable view for messages
// and tests.
func String(pieces []Piece) string {
	var b strings.Builder
	for _, p := range pieces {
		s := p.Text
		switch p.Special {
		case BOS:
			s = "<BOS>"
		case EOS:
			s = "<EOS>"
		}
		if p.Train {
			s = "⟦" + s + "⟧"
		}
		b.WriteString(s)
	}
	return b.String()
}
