package chat

import (
	"errors"
	"fmt"
	"os"
	"sort"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/gotune/gotune/engine/jinja"
	"github.com/gotune/gotune/engine/tokenizer"
)

// Jinja is a model's own chat template (the chat_template of its
// tokenizer_config.json, or a .jinja file), rendered as transformers'
// apply_chat_template renders it (package jinja).
//
// Labels come from the rendered text itself, not from a description of
// the format: the conversation is rendered whole, and each assistant
// message's span in it is found by rendering prefixes, as TRL and
// LLaMA-Factory do. For assistant message i, the span starts where the
// rendering of messages[:i] with add_generation_prompt stops agreeing
// with the whole conversation (so the generation prompt, e.g.
// "<|im_start|>assistant\n", is prompt, and whatever the template writes
// after it, such as Qwen3's empty <think></think> block, is reply), and
// ends where the rendering of messages[:i+1] ends, less trailing white
// space (the newline a template writes after its end-of-turn token is
// never generated: generation stops at that token). A template that
// writes a turn differently once it is no longer the last (Qwen3 and
// DeepSeek-R1 drop the reasoning of earlier turns) is handled by marking
// the end of the message's content with a sentinel: the span ends at
// that mark plus the end-of-turn text the template writes after the
// content. A conversation in which a message's span cannot be found this
// way is an error naming the message.
type Jinja struct {
	source   string // where the template came from, for messages
	tmpl     *jinja.Template
	bos, eos string
	stop     []string
	now      func() time.Time
}

// NewJinja parses a Jinja chat template for a model whose tokenizer is
// tok; source names where it came from (a file) for messages.
func NewJinja(source, src string, tok tokenizer.Tokenizer) (*Jinja, error) {
	t, err := jinja.Parse(src)
	if err != nil {
		return nil, fmt.Errorf("chat template %s: %w", source, err)
	}
	j := &Jinja{source: source, tmpl: t, now: time.Now}
	if tok != nil {
		j.bos = tokenString(tok, tok.BOS())
		j.eos = tokenString(tok, tok.EOS())
		j.stop = j.findStopTokens(tok)
	}
	return j, nil
}

// LoadJinjaFile reads a chat template from a .jinja file.
func LoadJinjaFile(path string, tok tokenizer.Tokenizer) (*Jinja, error) {
	src, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("chat template: %w", err)
	}
	return NewJinja(path, string(src), tok)
}

// SetNow fixes the time strftime_now reports (for reproducible tests).
func (j *Jinja) SetNow(now func() time.Time) { j.now = now }

func tokenString(tok tokenizer.Tokenizer, id int) string {
	if id == tokenizer.NoToken {
		return ""
	}
	s, _ := tok.IDToToken(id)
	return s
}

// Name implements Template: where the template came from.
func (j *Jinja) Name() string { return j.source }

// StopTokens implements Template: the end-of-turn token the template
// writes after a reply, when it is one token of the tokenizer.
func (j *Jinja) StopTokens() []string { return j.stop }

// Markers implements Template. The template's own special tokens are
// the model's, so there is nothing to check.
func (j *Jinja) Markers() []string { return nil }

// probeReply is the reply of the conversation findStopTokens renders.
const probeReply = "gotune probe reply"

// findStopTokens renders a one-exchange conversation and returns the
// text the template writes right after the reply when it is a single
// token (e.g. "<|im_end|>", "<|eot_id|>", "<end_of_turn>").
func (j *Jinja) findStopTokens(tok tokenizer.Tokenizer) []string {
	text, err := j.render([]Message{{Role: User, Content: "gotune probe"}, {Role: Assistant, Content: probeReply}}, nil, false)
	if err != nil {
		return nil
	}
	k := strings.LastIndex(text, probeReply)
	if k < 0 {
		return nil
	}
	after := strings.TrimSpace(text[k+len(probeReply):])
	if after == "" {
		return nil
	}
	if isAddedToken(tok, after) {
		return []string{after}
	}
	return nil
}

// isAddedToken reports whether s is exactly one token of tok.
func isAddedToken(tok tokenizer.Tokenizer, s string) bool {
	ids, err := tok.Encode(s, false)
	if err != nil || len(ids) != 1 {
		return false
	}
	t, ok := tok.IDToToken(ids[0])
	return ok && t == s
}

// render renders msgs (with mark appended to the content of message
// marked, when mark != nil).
func (j *Jinja) render(msgs []Message, mark *int, addGenerationPrompt bool) (string, error) {
	list := make([]jinja.Value, len(msgs))
	for i, m := range msgs {
		content := m.Content
		if m.Input != "" {
			content = userText(m, "\n\n")
		}
		if mark != nil && *mark == i {
			content += sentinel
		}
		d := jinja.NewDict()
		d.Set("role", m.Role)
		d.Set("content", content)
		if m.Reasoning != "" {
			d.Set("reasoning_content", m.Reasoning)
		}
		list[i] = d
	}
	out, err := j.tmpl.Render(map[string]jinja.Value{
		"messages":              list,
		"add_generation_prompt": addGenerationPrompt,
		"bos_token":             j.bos,
		"eos_token":             j.eos,
	}, jinja.Options{Now: j.now})
	if err != nil {
		var re *jinja.RaiseError
		if errors.As(err, &re) {
			return "", fmt.Errorf("the template raised an exception: %s", re.Message)
		}
		return "", err
	}
	return out, nil
}

// sentinel marks the end of a message's content (see Jinja).
const sentinel = "\u2063gotune-end-of-content\u2063"

// Render implements Template: the whole conversation, each assistant
// message's span (see Jinja) marked Train.
func (j *Jinja) Render(msgs []Message) ([]Piece, error) {
	if err := checkRoles(msgs); err != nil {
		return nil, err
	}
	full, err := j.render(msgs, nil, false)
	if err != nil {
		return nil, err
	}
	var spans [][2]int
	for i, m := range msgs {
		if m.Role != Assistant {
			continue
		}
		s, err := j.span(msgs, i, full)
		if err != nil {
			return nil, fmt.Errorf("messages[%d]: %w", i, err)
		}
		spans = append(spans, s)
	}
	if len(spans) == 0 {
		return nil, fmt.Errorf("the conversation has no assistant message to train on")
	}
	sort.Slice(spans, func(a, b int) bool { return spans[a][0] < spans[b][0] })
	var ps []Piece
	at := 0
	for _, s := range spans {
		if s[0] < at {
			return nil, fmt.Errorf("assistant messages overlap in the rendered conversation")
		}
		if s[0] > at {
			ps = append(ps, Piece{Text: full[at:s[0]]})
		}
		ps = append(ps, Piece{Text: full[s[0]:s[1]], Train: true})
		at = s[1]
	}
	if at < len(full) {
		ps = append(ps, Piece{Text: full[at:]})
	}
	return ps, nil
}

// span finds assistant message i in full, the rendered conversation.
func (j *Jinja) span(msgs []Message, i int, full string) ([2]int, error) {
	prompt, err := j.render(msgs[:i], nil, true)
	if err != nil {
		return [2]int{}, err
	}
	start := commonPrefix(prompt, full)
	upto, err := j.render(msgs[:i+1], nil, false)
	if err != nil {
		return [2]int{}, err
	}
	if strings.HasPrefix(full, upto) && len(upto) >= start {
		return [2]int{start, max(start, len(strings.TrimRight(upto, " \t\r\n")))}, nil
	}
	// The template writes this turn differently when it is the last:
	// find its content's end with the sentinel, then the end-of-turn
	// text that follows the content.
	marked, err := j.render(msgs, &i, false)
	if err != nil {
		return [2]int{}, err
	}
	end := strings.Index(marked, sentinel)
	lastMarked, err := j.render(msgs[:i+1], &i, false)
	if err != nil {
		return [2]int{}, err
	}
	k := strings.LastIndex(lastMarked, sentinel)
	if end < start || k < 0 || marked[:end] != full[:end] {
		return [2]int{}, fmt.Errorf("cannot find the assistant message in the rendered conversation (chat template %s)", j.source)
	}
	suffix := strings.TrimRight(lastMarked[k+len(sentinel):], " \t\r\n")
	if !strings.HasPrefix(full[end:], suffix) {
		return [2]int{}, fmt.Errorf("cannot find the end of the assistant message in the rendered conversation (chat template %s)", j.source)
	}
	return [2]int{start, end + len(suffix)}, nil
}

// commonPrefix is the length of the longest common prefix of a and b,
// backed off to a character boundary.
func commonPrefix(a, b string) int {
	n := 0
	for n < len(a) && n < len(b) && a[n] == b[n] {
		n++
	}
	for n > 0 && n < len(b) && !utf8.RuneStart(b[n]) {
		n--
	}
	return n
}

// Prompt implements Template: the conversation and the generation
// prompt (add_generation_prompt=True), as one untrained piece.
func (j *Jinja) Prompt(msgs []Message) ([]Piece, error) {
	if err := checkRoles(msgs); err != nil {
		return nil, err
	}
	text, err := j.render(msgs, nil, true)
	if err != nil {
		return nil, err
	}
	return []Piece{{Text: text}}, nil
}

// checkRoles rejects an empty conversation or an unknown role; the
// template itself decides which orders it accepts.
func checkRoles(msgs []Message) error {
	if len(msgs) == 0 {
		return fmt.Errorf("the conversation has no messages")
	}
	for i, m := range msgs {
		switch m.Role {
		case System, User, Assistant, Tool:
		default:
			return fmt.Errorf("messages[%d]: unknown role %q (want %s, %s, %s or %s)", i, m.Role, System, User, Assistant, Tool)
		}
	}
	return nil
}
