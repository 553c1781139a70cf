package chat

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"slices"
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
// message's span in it is found by rendering prefixes and by marking the
// end of a message's content with a sentinel, as TRL and LLaMA-Factory
// find the reply in a rendered conversation. For assistant message i:
//
//   - the span starts where the generation prompt ends: where the
//     rendering of messages[:i] with add_generation_prompt stops
//     agreeing with the whole conversation, or, when later, where the
//     text the template writes after the previous message's content in
//     that rendering stops agreeing (templates such as Mistral's write
//     the system prompt into the last user turn only, so the renderings
//     part early). The generation prompt (e.g. "<|im_start|>assistant\n")
//     is prompt; what the template writes after it, such as Qwen3's
//     empty <think></think> block, is reply;
//   - the span ends with the template's end-of-turn text (see
//     EndOfTurn): its first occurrence after the start, before the next
//     message's content; else (a turn the template ends otherwise, such
//     as a tool call) where the template stops writing the message
//     (see span). What a template writes after that, such as the
//     newline after <|im_end|> or Phi's <|endoftext|> after the last
//     turn, is never generated (generation stops at the end of the turn)
//     and is not trained. For a template without end-of-turn text (GLM-4
//     ends a reply with the next turn's role token) the span ends with
//     the message's content.
//
// A conversation in which a message's span cannot be found this way is
// an error naming the message.
type Jinja struct {
	source   string // where the template came from, for messages
	tmpl     *jinja.Template
	tok      tokenizer.Tokenizer // nil for text-only rendering
	bos, eos string
	tools    jinja.Value // the tools variable; nil when unset
	eot      string
	stop     []string
	now      func() time.Time
}

// NewJinja parses a Jinja chat template for a model whose tokenizer is
// tok; source names where it came from (a file) for messages. tok may be
// nil to render text only: the special tokens are then unknown, and the
// end of a turn is cut at white space or after a '>' or ']' instead of at
// a token boundary.
func NewJinja(source, src string, tok tokenizer.Tokenizer) (*Jinja, error) {
	t, err := jinja.Parse(src)
	if err != nil {
		return nil, fmt.Errorf("chat template %s: %w", source, err)
	}
	j := &Jinja{source: source, tmpl: t, tok: tok, now: time.Now}
	if tok != nil {
		j.bos = tokenString(tok, tok.BOS())
		j.eos = tokenString(tok, tok.EOS())
	}
	j.findEndOfTurn()
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

// SetSpecialTokens sets the bos_token and eos_token the template sees,
// for text-only rendering (a Jinja made with a tokenizer has its own),
// and finds the end of a turn again.
func (j *Jinja) SetSpecialTokens(bos, eos string) {
	j.bos, j.eos = bos, eos
	j.findEndOfTurn()
}

// WithTools returns a copy of j that renders with tools, transformers'
// tools argument: the tool definitions the conversation may call (JSON,
// a list, as the data holds it). Empty tools leave the variable unset.
func (j *Jinja) WithTools(tools json.RawMessage) (*Jinja, error) {
	c := *j
	c.tools = nil
	if len(bytes.TrimSpace(tools)) == 0 {
		return &c, nil
	}
	v, err := jinja.FromJSON(tools)
	if err != nil {
		return nil, fmt.Errorf("tools: %w", err)
	}
	if _, ok := v.([]jinja.Value); !ok && v != nil {
		return nil, fmt.Errorf("tools must be a JSON list of tool definitions")
	}
	c.tools = v
	return &c, nil
}

func tokenString(tok tokenizer.Tokenizer, id int) string {
	if id == tokenizer.NoToken {
		return ""
	}
	s, _ := tok.IDToToken(id)
	return s
}

// Name implements Template: where the template came from.
func (j *Jinja) Name() string { return j.source }

// StopTokens implements Template: the template's end-of-turn text when
// it is one token of the tokenizer (e.g. "<|im_end|>", "<|eot_id|>",
// "<end_of_turn>", "<|end|>").
func (j *Jinja) StopTokens() []string { return j.stop }

// EndOfTurn is the text the template writes right after a reply's
// content whether or not the conversation goes on (e.g. "<|im_end|>",
// "</s>"), cut at a token boundary; "" when it writes none.
func (j *Jinja) EndOfTurn() string { return j.eot }

// Markers implements Template. The template's own special tokens are
// the model's, so there is nothing to check.
func (j *Jinja) Markers() []string { return nil }

// Probe conversation findEndOfTurn renders.
const (
	probeUser  = "gotune probe"
	probeReply = "gotune probe reply"
)

// findEndOfTurn sets eot from a one-exchange conversation rendered as it
// is and followed by another user message: the text both renderings have
// after the reply (see EndOfTurn); and stop to it when it is one token.
func (j *Jinja) findEndOfTurn() {
	j.eot, j.stop = "", nil
	reply := 1
	msgs := []Message{{Role: User, Content: probeUser}, {Role: Assistant, Content: probeReply}}
	last, err := j.render(msgs, reply, false)
	if err != nil {
		return
	}
	more, err := j.render(append(msgs, Message{Role: User, Content: probeUser}), reply, false)
	if err != nil {
		return
	}
	a, b := afterSentinel(last), afterSentinel(more)
	if a < 0 || b < 0 {
		return
	}
	j.eot = j.commonTurnEnd(last[a:], more[b:])
	if j.tok != nil && j.eot != "" && isAddedToken(j.tok, j.eot) {
		j.stop = []string{j.eot}
	}
}

// afterSentinel is the index just after the sentinel in s, or -1.
func afterSentinel(s string) int {
	k := strings.Index(s, sentinel)
	if k < 0 {
		return -1
	}
	return k + len(sentinel)
}

// commonTurnEnd is the longest common prefix of a and b that ends at a
// token boundary of a (see NewJinja for text-only rendering), less
// trailing white space.
func (j *Jinja) commonTurnEnd(a, b string) string {
	n := commonPrefix(a, b)
	for ; n > 0; n-- {
		if j.boundary(a, n) {
			break
		}
	}
	return strings.TrimRight(a[:n], " \t\r\n")
}

// boundary reports whether a[:n] ends at a token boundary of a.
func (j *Jinja) boundary(a string, n int) bool {
	if n == len(a) {
		return true
	}
	if j.tok == nil {
		return endsMarker(a[:n])
	}
	head, err1 := j.tok.Encode(a[:n], false)
	whole, err2 := j.tok.Encode(a, false)
	return err1 == nil && err2 == nil && len(head) <= len(whole) && slices.Equal(head, whole[:len(head)])
}

// markerEnds are the characters after which text-only rendering cuts:
// white space and the ends of special tokens ("<|im_end|>", "[/INST]").
const markerEnds = " \t\r\n>]"

// endsMarker reports whether s ends with one of markerEnds.
func endsMarker(s string) bool {
	return s != "" && strings.ContainsRune(markerEnds, rune(s[len(s)-1]))
}

// promptEnd is how far b agrees with the prompt a: their common prefix,
// backed off to the end of a marker or white space when a goes on
// differently (DeepSeek-R1's generation prompt adds "<think>\n" where the
// conversation has "<｜tool▁calls▁begin｜>": they share a "<"), so that a
// reply never starts inside a token.
func promptEnd(a, b string) int {
	n := commonPrefix(a, b)
	if n == len(a) {
		return n
	}
	for n > 0 && !endsMarker(b[:n]) {
		n--
	}
	return n
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

// noMark is the mark argument of render that marks no message.
const noMark = -1

// render renders msgs, with the sentinel appended to the content of
// message mark (noMark: none).
func (j *Jinja) render(msgs []Message, mark int, addGenerationPrompt bool) (string, error) {
	list := make([]jinja.Value, len(msgs))
	for i, m := range msgs {
		d, err := messageDict(m, i == mark)
		if err != nil {
			return "", fmt.Errorf("messages[%d]: %w", i, err)
		}
		list[i] = d
	}
	vars := map[string]jinja.Value{
		"messages":              list,
		"add_generation_prompt": addGenerationPrompt,
		"bos_token":             j.bos,
		"eos_token":             j.eos,
	}
	if j.tools != nil {
		vars["tools"] = j.tools
	}
	out, err := j.tmpl.Render(vars, jinja.Options{Now: j.now})
	if err != nil {
		var re *jinja.RaiseError
		if errors.As(err, &re) {
			return "", fmt.Errorf("the template raised an exception: %s", re.Message)
		}
		return "", err
	}
	return out, nil
}

// messageDict is the dict a template sees for m (see Message), with the
// sentinel appended to its content when marked.
func messageDict(m Message, marked bool) (*jinja.Dict, error) {
	d := jinja.NewDict()
	d.Set("role", m.Role)
	text := m.Content
	if m.Input != "" {
		text = userText(m, "\n\n")
	}
	var content jinja.Value = text
	switch {
	case marked:
		content = text + sentinel
	case m.NullContent:
		content = nil
	}
	d.Set("content", content)
	if m.Reasoning != "" {
		d.Set("reasoning_content", m.Reasoning)
	}
	if len(bytes.TrimSpace(m.ToolCalls)) > 0 {
		calls, err := jinja.FromJSON(m.ToolCalls)
		if err != nil {
			return nil, fmt.Errorf("tool_calls: %w", err)
		}
		d.Set("tool_calls", calls)
	}
	if m.ToolCallID != "" {
		d.Set("tool_call_id", m.ToolCallID)
	}
	if m.Name != "" {
		d.Set("name", m.Name)
	}
	return d, nil
}

// sentinel marks the end of a message's content (see Jinja).
const sentinel = "\u2063gotune-end-of-content\u2063"

// Render implements Template: the whole conversation, each assistant
// message's span (see Jinja) marked Train.
func (j *Jinja) Render(msgs []Message) ([]Piece, error) {
	if err := checkRoles(msgs); err != nil {
		return nil, err
	}
	full, err := j.render(msgs, noMark, false)
	if err != nil {
		return nil, err
	}
	conv := &rendered{msgs: msgs, full: full, ends: map[int]contentPos{}}
	var spans [][2]int
	for i, m := range msgs {
		if m.Role != Assistant {
			continue
		}
		s, err := j.span(conv, i)
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
func (j *Jinja) span(c *rendered, i int) ([2]int, error) {
	msgs, full := c.msgs, c.full
	start, err := j.replyStart(c, i)
	if err != nil {
		return [2]int{}, err
	}
	limit := j.nextContentStart(c, i, start)
	if j.eot != "" {
		if k := strings.Index(full[start:limit], j.eot); k >= 0 {
			return [2]int{start, start + k + len(j.eot)}, nil
		}
	}
	// No end-of-turn text: the reply ends with its content, or, for a
	// message that calls tools (a sentinel in its content would be laid
	// out as text, where the template writes none) and when the content
	// cannot be found, where the template stops writing this message:
	// the end of its rendering of messages[:i+1] as far as the whole
	// conversation agrees with it (some templates end a tool call with
	// their own token, e.g. <|eom_id|>, or go on with the tool's output
	// in the same turn).
	if len(msgs[i].ToolCalls) == 0 {
		if e, ok := j.contentEnd(c, i); ok && e >= start && e <= limit {
			return [2]int{start, e}, nil
		}
	}
	upto, err := j.render(msgs[:i+1], noMark, false)
	if err != nil {
		return [2]int{}, err
	}
	e := min(len(strings.TrimRight(full[:promptEnd(upto, full)], " \t\r\n")), limit)
	if e <= start && len(msgs[i].ToolCalls) > 0 {
		return [2]int{}, fmt.Errorf("chat template %s writes nothing for the message's tool calls (it has no place for OpenAI-style tool_calls)", j.source)
	}
	return [2]int{start, max(start, e)}, nil
}

// nextContentStart bounds the span of assistant message i: where the
// content of the next message starts in full (its end less its length),
// or the end of full.
func (j *Jinja) nextContentStart(c *rendered, i, start int) int {
	if i+1 == len(c.msgs) {
		return len(c.full)
	}
	q, ok := j.contentEnd(c, i+1)
	if !ok {
		return len(c.full)
	}
	return max(start, q-len(strings.TrimSpace(c.msgs[i+1].Content)))
}

// replyStart is where the generation prompt of assistant message i ends
// in full (see Jinja).
func (j *Jinja) replyStart(c *rendered, i int) (int, error) {
	msgs, full := c.msgs, c.full
	prompt, err := j.render(msgs[:i], noMark, true)
	if err != nil {
		return 0, err
	}
	start := promptEnd(prompt, full)
	if i == 0 {
		return start, nil
	}
	q, ok := j.contentEnd(c, i-1)
	if !ok {
		return start, nil
	}
	marked, err := j.render(msgs[:i], i-1, true)
	if err != nil {
		return 0, err
	}
	if k := afterSentinel(marked); k >= 0 {
		start = max(start, q+promptEnd(marked[k:], full[q:]))
	}
	return start, nil
}

// rendered is a conversation being laid out by Render: its messages,
// their whole rendering, and the content ends found so far.
type rendered struct {
	msgs []Message
	full string
	ends map[int]contentPos
}

// contentPos is a cached result of contentEnd.
type contentPos struct {
	at int
	ok bool
}

// contentEnd is where the content of message i ends in the whole
// rendering, found by rendering the conversation with the sentinel after
// it; ok is false when the template does not write the content (or
// writes it changed other than by stripping white space before the
// sentinel), and for a null content (marking it would make it a string,
// which templates lay out differently).
func (j *Jinja) contentEnd(c *rendered, i int) (int, bool) {
	if p, ok := c.ends[i]; ok {
		return p.at, p.ok
	}
	at, ok := j.findContentEnd(c.msgs, i, c.full)
	c.ends[i] = contentPos{at, ok}
	return at, ok
}

// findContentEnd is contentEnd without the cache.
func (j *Jinja) findContentEnd(msgs []Message, i int, full string) (int, bool) {
	if msgs[i].NullContent {
		return 0, false
	}
	marked, err := j.render(msgs, i, false)
	if err != nil {
		return 0, false
	}
	k := strings.Index(marked, sentinel)
	if k < 0 {
		return 0, false
	}
	if marked[:k] == full[:min(k, len(full))] {
		return k, true
	}
	// A template that strips the content (| trim) keeps the white space
	// before the sentinel, which the unmarked rendering lost.
	k = len(strings.TrimRight(marked[:k], " \t\r\n"))
	return k, marked[:k] == full[:min(k, len(full))]
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
	text, err := j.render(msgs, noMark, true)
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
