package chat

import (
	"bytes"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
)

// template is a built-in Template: the shared role checks plus a layout
// function.
type template struct {
	name    string
	stop    []string
	markers []string
	// singleTurn templates hold one user message and one reply.
	singleTurn bool
	// layout renders a checked conversation: an optional system message,
	// then alternating user and assistant turns. With prompt, turns ends
	// with a user message and layout appends the start of the reply.
	layout func(sys *Message, turns []Message, prompt bool) []Piece
}

func (t *template) Name() string         { return t.name }
func (t *template) StopTokens() []string { return t.stop }
func (t *template) Markers() []string    { return t.markers }

func (t *template) Render(msgs []Message) ([]Piece, error) {
	sys, turns, err := t.check(msgs, false)
	if err != nil {
		return nil, err
	}
	return t.layout(sys, turns, false), nil
}

func (t *template) Prompt(msgs []Message) ([]Piece, error) {
	sys, turns, err := t.check(msgs, true)
	if err != nil {
		return nil, err
	}
	return t.layout(sys, turns, true), nil
}

// check validates the roles: an optional leading system message, then
// user and assistant alternating from a user message, ending with the
// assistant (training) or the user (prompting). Messages are named by
// their index so callers can add the file and line.
func (t *template) check(msgs []Message, prompt bool) (*Message, []Message, error) {
	if len(msgs) == 0 {
		return nil, nil, fmt.Errorf("the conversation has no messages")
	}
	msgs, err := lowerTools(msgs)
	if err != nil {
		return nil, nil, err
	}
	var sys *Message
	turns := msgs
	for i, m := range msgs {
		switch m.Role {
		case System:
			if i != 0 {
				return nil, nil, fmt.Errorf("messages[%d]: a system message may only come first", i)
			}
		case User, Assistant:
		default:
			return nil, nil, fmt.Errorf("messages[%d]: unknown role %q (want %s, %s or %s)", i, m.Role, System, User, Assistant)
		}
	}
	if msgs[0].Role == System {
		sys, turns = &msgs[0], msgs[1:]
	}
	base := len(msgs) - len(turns)
	for i, m := range turns {
		want := User
		if i%2 == 1 {
			want = Assistant
		}
		if m.Role != want {
			return nil, nil, fmt.Errorf("messages[%d] is a %s message where a %s message was expected: the roles must alternate user, assistant, user, ... (after an optional system message)", base+i, m.Role, want)
		}
	}
	switch {
	case len(turns) == 0:
		return nil, nil, fmt.Errorf("the conversation has only a system message")
	case !prompt && turns[len(turns)-1].Role != Assistant:
		return nil, nil, fmt.Errorf("the conversation ends with a user message, so it has no reply to train on (the last message must be the assistant's)")
	case prompt && turns[len(turns)-1].Role != User:
		return nil, nil, fmt.Errorf("a prompt must end with a user message")
	}
	if t.singleTurn && len(turns) > 2 {
		return nil, nil, fmt.Errorf("it holds one instruction and its response, but the conversation has %d user messages (multi-turn chat needs another template, such as chatml or llama3)", (len(turns)+1)/2)
	}
	return sys, turns, nil
}

// lowerTools lays tool use out for a built-in template, which has no
// format of its own for it (as LLaMA-Factory's templates without a tool
// format do): an assistant message's tool calls become its text, each
// call's function object as JSON on a line of its own after any content,
// and a tool's output becomes a user turn.
func lowerTools(msgs []Message) ([]Message, error) {
	var out []Message
	for i, m := range msgs {
		if m.Role != Tool && len(bytes.TrimSpace(m.ToolCalls)) == 0 {
			continue
		}
		if out == nil {
			out = slices.Clone(msgs)
		}
		if m.Role == Tool {
			out[i] = Message{Role: User, Content: m.Content}
			continue
		}
		var calls []struct{ Function json.RawMessage }
		if err := json.Unmarshal(m.ToolCalls, &calls); err != nil {
			return nil, fmt.Errorf("messages[%d].tool_calls: %v", i, err)
		}
		lines := []string{}
		if m.Content != "" {
			lines = append(lines, m.Content)
		}
		for _, c := range calls {
			lines = append(lines, string(c.Function))
		}
		out[i] = Message{Role: m.Role, Content: strings.Join(lines, "\n")}
	}
	if out == nil {
		return msgs, nil
	}
	return out, nil
}

// userText joins a user message's content and its instruction input.
func userText(m Message, sep string) string {
	if m.Input == "" {
		return m.Content
	}
	return m.Content + sep + m.Input
}

var templates = map[string]*template{
	"plain":  plainTemplate,
	"alpaca": alpacaTemplate,
	"llama2": llama2Template,
	"llama3": llama3Template,
	"chatml": chatmlTemplate,
}

// plainTemplate is the layout for base models without a chat format:
// BOS, then each system or user message followed by a newline (an
// instruction's input on its own line after the instruction), and each
// reply followed by EOS:
//
//	<BOS>{system}\n{instruction}\n{input}\n⟦{output}<EOS>⟧
var plainTemplate = &template{
	name: "plain",
	layout: func(sys *Message, turns []Message, prompt bool) []Piece {
		ps := []Piece{{Special: BOS}}
		if sys != nil {
			ps = append(ps, Piece{Text: sys.Content + "\n"})
		}
		for _, m := range turns {
			if m.Role == User {
				ps = append(ps, Piece{Text: userText(m, "\n") + "\n"})
				continue
			}
			ps = append(ps, Piece{Text: m.Content, Train: true}, Piece{Special: EOS, Train: true})
		}
		return ps
	},
}

// The Stanford Alpaca prompt, with and without an input. A system
// message replaces the preamble sentence.
const (
	alpacaPreamble        = "Below is an instruction that describes a task. Write a response that appropriately completes the request."
	alpacaPreambleInput   = "Below is an instruction that describes a task, paired with an input that provides further context. Write a response that appropriately completes the request."
	alpacaInstructionHead = "\n\n### Instruction:\n"
	alpacaInputHead       = "\n\n### Input:\n"
	alpacaResponseHead    = "\n\n### Response:\n"
)

// alpacaTemplate is the Stanford Alpaca layout (one instruction, one
// response):
//
//	<BOS>{preamble}\n\n### Instruction:\n{instruction}\n\n### Input:\n{input}\n\n### Response:\n⟦{output}<EOS>⟧
var alpacaTemplate = &template{
	name:       "alpaca",
	singleTurn: true,
	layout: func(sys *Message, turns []Message, prompt bool) []Piece {
		u := turns[0]
		var b strings.Builder
		switch {
		case sys != nil:
			b.WriteString(sys.Content)
		case u.Input != "":
			b.WriteString(alpacaPreambleInput)
		default:
			b.WriteString(alpacaPreamble)
		}
		b.WriteString(alpacaInstructionHead + u.Content)
		if u.Input != "" {
			b.WriteString(alpacaInputHead + u.Input)
		}
		b.WriteString(alpacaResponseHead)
		ps := []Piece{{Special: BOS}, {Text: b.String()}}
		if !prompt {
			ps = append(ps, Piece{Text: turns[1].Content, Train: true}, Piece{Special: EOS, Train: true})
		}
		return ps
	},
}

// llama2Template is Meta's Llama-2-chat layout as its Hugging Face chat
// template writes it (contents stripped of surrounding white space, the
// system message inside the first instruction):
//
//	<BOS>[INST] <<SYS>>\n{system}\n<</SYS>>\n\n{user} [/INST]⟦ {reply} <EOS>⟧<BOS>[INST] {user} [/INST]...
var llama2Template = &template{
	name: "llama2",
	layout: func(sys *Message, turns []Message, prompt bool) []Piece {
		var ps []Piece
		for i, m := range turns {
			if m.Role == User {
				content := userText(m, "\n\n")
				if i == 0 && sys != nil {
					content = "<<SYS>>\n" + sys.Content + "\n<</SYS>>\n\n" + content
				}
				ps = append(ps, Piece{Special: BOS}, Piece{Text: "[INST] " + strings.TrimSpace(content) + " [/INST]"})
				continue
			}
			ps = append(ps, Piece{Text: " " + strings.TrimSpace(m.Content) + " ", Train: true}, Piece{Special: EOS, Train: true})
		}
		return ps
	},
}

// llama3Template is Meta's Llama 3 instruct layout (contents stripped;
// each turn ends with <|eot_id|>, which is trained and stops generation):
//
//	<BOS><|start_header_id|>system<|end_header_id|>\n\n{system}<|eot_id|><|start_header_id|>user<|end_header_id|>\n\n{user}<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n⟦{reply}<|eot_id|>⟧
var llama3Template = &template{
	name:    "llama3",
	stop:    []string{"<|eot_id|>"},
	markers: []string{"<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"},
	layout: func(sys *Message, turns []Message, prompt bool) []Piece {
		header := func(role string) string { return "<|start_header_id|>" + role + "<|end_header_id|>\n\n" }
		ps := []Piece{{Special: BOS}}
		if sys != nil {
			ps = append(ps, Piece{Text: header(System) + strings.TrimSpace(sys.Content) + "<|eot_id|>"})
		}
		for _, m := range turns {
			if m.Role == User {
				ps = append(ps, Piece{Text: header(User) + strings.TrimSpace(userText(m, "\n\n")) + "<|eot_id|>" + header(Assistant)})
				continue
			}
			ps = append(ps, Piece{Text: strings.TrimSpace(m.Content) + "<|eot_id|>", Train: true})
		}
		return ps
	},
}

// chatmlTemplate is the ChatML layout used by Qwen (no BOS; no default
// system message is added; contents are kept as they are). The reply and
// its <|im_end|> are trained; the newline after it is not:
//
//	<|im_start|>system\n{system}<|im_end|>\n<|im_start|>user\n{user}<|im_end|>\n<|im_start|>assistant\n⟦{reply}<|im_end|>⟧\n
var chatmlTemplate = &template{
	name:    "chatml",
	stop:    []string{"<|im_end|>"},
	markers: []string{"<|im_start|>", "<|im_end|>"},
	layout: func(sys *Message, turns []Message, prompt bool) []Piece {
		var ps []Piece
		if sys != nil {
			ps = append(ps, Piece{Text: "<|im_start|>system\n" + sys.Content + "<|im_end|>\n"})
		}
		for _, m := range turns {
			if m.Role == User {
				ps = append(ps, Piece{Text: "<|im_start|>user\n" + userText(m, "\n\n") + "<|im_end|>\n<|im_start|>assistant\n"})
				continue
			}
			ps = append(ps, Piece{Text: m.Content + "<|im_end|>", Train: true}, Piece{Text: "\n"})
		}
		return ps
	},
}
