// Package textdata reads the dataset formats people have as text and
// tokenizes them into the examples package data batches:
//
//   - instruction (alpaca): {"instruction": ..., "input": ..., "output":
//     ..., "system": ..., "history": [[prompt, response], ...]} ("input",
//     "system" and "history" optional): one exchange after the history's;
//   - sharegpt: {"conversations": [{"from": ..., "value": ...}, ...],
//     "system": ..., "tools": ...} with LLaMA-Factory's roles human, gpt,
//     system (first only), function_call and observation;
//   - chat (OpenAI): {"messages": [{"role": ..., "content": ...}, ...],
//     "tools": [...]} with roles system, user, assistant and tool, and the
//     message keys tool_calls, tool_call_id, name and reasoning_content;
//   - text: {"text": ...}, or a whole .txt file: documents packed into
//     blocks of the sequence length;
//   - pretokenized: {"input_ids": [...], "labels": [...]} (package data).
//
// Files are JSONL, a JSON array of records, or Parquet (data.ReadRecords).
// The format is detected per file from the first record's keys, or chosen;
// LLaMA-Factory's dataset_info.json registry names files and maps their
// columns (OpenRegistry).
// Instruction and chat records are laid out with a chat template (package
// chat) and train on the replies only: prompt tokens get label -100. A
// model's own template sees the messages, their tool calls and
// reasoning, and the tool definitions as transformers'
// apply_chat_template is given them. Text
// trains on every token. Every problem with a record is reported as
// file:line with what is wrong: unknown fields, wrong types, blank lines,
// a conversation the template cannot lay out. Examples longer than the
// sequence length are truncated by data.Loader, which counts them.
package textdata

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"slices"
	"sort"
	"strings"

	"github.com/gotune/gotune/engine/chat"
	"github.com/gotune/gotune/engine/data"
	"github.com/gotune/gotune/engine/fielderr"
	"github.com/gotune/gotune/engine/tokenizer"
)

// Format names accepted by Options.Format (and --format).
const (
	// Auto detects the format from the first record (and .txt files as text).
	Auto = "auto"
	// Pretokenized is data.Pretokenized: token ids and optional labels.
	Pretokenized = "pretokenized"
	// Instruction is one instruction, optional input and system, and output.
	Instruction = "instruction"
	// Chat is a list of messages with roles (OpenAI's form).
	Chat = "chat"
	// ShareGPTFormat is ShareGPT's "conversations" with "from"/"value"
	// turns (LLaMA-Factory's sharegpt formatting with its default tags).
	ShareGPTFormat = "sharegpt"
	// Text is plain text, packed into blocks.
	Text = "text"
)

// FormatNames lists the values of Options.Format.
func FormatNames() []string {
	return []string{Auto, Pretokenized, Instruction, ShareGPTFormat, Chat, Text}
}

// Options configure Open.
type Options struct {
	// Format is one of FormatNames; "" means Auto.
	Format string
	// Tokenizer encodes text formats; it may be nil for pre-tokenized data.
	Tokenizer tokenizer.Tokenizer
	// Template lays out instruction and chat records; nil means
	// chat.Default(Tokenizer).
	Template chat.Template
	// SeqLen is the block length text is packed into (at least 2 for text
	// data; unused by the other formats, whose long examples the loader
	// truncates).
	SeqLen int
	// VocabSize is the model's vocabulary size: token ids at or above it
	// are errors (<= 0 skips the check).
	VocabSize int
}

// Open reads a dataset file in any supported format into validated
// examples. The Dataset's Format names the format read. A wrong or
// missing option (Format, Tokenizer) is a *fielderr.Error.
func Open(path string, opts Options) (*data.Dataset, error) {
	format, err := resolveFormat(path, opts.Format)
	if err != nil {
		return nil, err
	}
	if format == Pretokenized {
		return data.Load(path, data.LoadOptions{VocabSize: opts.VocabSize})
	}
	if opts.Tokenizer == nil {
		return nil, fielderr.Errorf("Tokenizer", "is needed: %s is %s data", path, format)
	}
	if format == Text {
		return openText(path, opts)
	}
	tmpl, err := conversationTemplate(path, opts)
	if err != nil {
		return nil, err
	}
	ds := &data.Dataset{Name: path, Format: format}
	err = readConversations(path, format, func(c Conversation) error {
		return appendConversation(ds, c, tmpl, opts)
	})
	if err != nil {
		return nil, err
	}
	return ds, nil
}

// conversationTemplate returns the template conversations of path are
// laid out with: opts.Template, else the tokenizer's default, checked
// against the tokenizer.
func conversationTemplate(path string, opts Options) (chat.Template, error) {
	if opts.Tokenizer == nil {
		return nil, fielderr.Errorf("Tokenizer", "is needed: %s holds conversations", path)
	}
	tmpl := opts.Template
	if tmpl == nil {
		var err error
		if tmpl, _, err = chat.Default(opts.Tokenizer, "Template"); err != nil {
			return nil, err
		}
	}
	return tmpl, chat.Check(tmpl, opts.Tokenizer)
}

// appendConversation encodes c and appends it to ds.
func appendConversation(ds *data.Dataset, c Conversation, tmpl chat.Template, opts Options) error {
	ex, err := encodeConversation(c, tmpl, opts.Tokenizer)
	if err != nil {
		return err
	}
	if err := ex.Validate(opts.VocabSize); err != nil {
		return err
	}
	ds.Examples = append(ds.Examples, ex)
	return nil
}

// EncodeConversation lays out one conversation with tmpl, tokenizes it
// and validates it against a vocabulary of vocab tokens (<= 0 skips the
// check), exactly as Open does for each record of a file: for examples
// made in memory (synthetic tasks) rather than read from one.
func EncodeConversation(c Conversation, tmpl chat.Template, tok tokenizer.Tokenizer, vocab int) (data.Example, error) {
	ex, err := encodeConversation(c, tmpl, tok)
	if err != nil {
		return ex, err
	}
	return ex, ex.Validate(vocab)
}

// encodeConversation renders and tokenizes one conversation.
func encodeConversation(c Conversation, tmpl chat.Template, tok tokenizer.Tokenizer) (data.Example, error) {
	tmpl, err := chat.WithTools(tmpl, c.Tools)
	if err != nil {
		return data.Example{}, data.Errorf(c.Loc, "%v", err)
	}
	pieces, err := tmpl.Render(c.Messages)
	if err != nil {
		return data.Example{}, data.Errorf(c.Loc, "chat template %s: %v", tmpl.Name(), err)
	}
	ids, labels, err := chat.Encode(tok, pieces)
	if err != nil {
		return data.Example{}, data.Errorf(c.Loc, "%v", err)
	}
	return data.Example{InputIDs: ids, Labels: labels, Loc: c.Loc}, nil
}

// Detect returns the format of a file: text for a .txt file, else the
// format whose keys the first JSONL record has.
func Detect(path string) (string, error) {
	return resolveFormat(path, Auto)
}

func resolveFormat(path, format string) (string, error) {
	switch format {
	case "", Auto:
	case Pretokenized, Instruction, ShareGPTFormat, Chat, Text:
		if isTxt(path) && format != Text {
			return "", fielderr.Errorf("Format", "%s needs a JSONL file: %s is a .txt file, read as plain text", format, path)
		}
		return format, nil
	default:
		return "", fielderr.Errorf("Format", "%q: unknown data format (known: %s)", format, strings.Join(FormatNames(), ", "))
	}
	if isTxt(path) {
		if _, err := os.Stat(path); err != nil {
			return "", fmt.Errorf("data file: %w", err)
		}
		return Text, nil
	}
	f, err := data.DetectFormat(path, []data.Format{data.Pretokenized{}, detector{Instruction, "instruction"}, detector{ShareGPTFormat, "conversations"}, detector{Chat, "messages"}, detector{Text, "text"}})
	if err != nil {
		return "", err
	}
	return f.Name(), nil
}

func isTxt(path string) bool { return strings.HasSuffix(strings.ToLower(path), ".txt") }

// detector recognises a format by a key of the first record.
type detector struct{ name, key string }

func (d detector) Name() string { return d.name }
func (d detector) Detect(r data.Record) bool {
	_, ok := r.Fields[d.key]
	return ok
}
func (d detector) Decode(data.Record) ([]data.Example, error) {
	return nil, errors.New("textdata: detector cannot decode")
}

// Conversation is one instruction or chat record as messages.
type Conversation struct {
	// Loc is the record's file and line.
	Loc data.Loc
	// Messages are the turns; for instruction records, built by
	// chat.FromInstruction.
	Messages []chat.Message
	// Tools are the tool definitions the conversation may call (a JSON
	// list in OpenAI's form, see chat.WithTools); nil when it has none.
	Tools json.RawMessage
}

// ReadConversations reads an instruction or chat file (format Auto
// detects which) into conversations, for evaluation and inspection. It
// returns the format read.
func ReadConversations(path, format string) ([]Conversation, string, error) {
	format, err := resolveFormat(path, format)
	if err != nil {
		return nil, "", err
	}
	if !IsConversational(format) {
		return nil, format, fmt.Errorf("%s is %s data; conversations come from instruction, sharegpt or chat data", path, format)
	}
	var out []Conversation
	err = readConversations(path, format, func(c Conversation) error {
		out = append(out, c)
		return nil
	})
	if err != nil {
		return nil, format, err
	}
	return out, format, nil
}

func readConversations(path, format string, fn func(Conversation) error) error {
	n := 0
	err := data.ReadRecords(path, func(r data.Record) error {
		var c Conversation
		var err error
		switch format {
		case Instruction:
			c, err = parseInstruction(r)
		case ShareGPTFormat:
			c, err = parseShareGPT(r)
		default:
			c, err = parseChat(r)
		}
		if err != nil {
			return err
		}
		n++
		return fn(c)
	})
	if err != nil {
		return err
	}
	if n == 0 {
		return data.Errorf(data.Loc{File: path}, "no examples (the file is empty)")
	}
	return nil
}

// IsConversational reports whether a format's records are conversations.
func IsConversational(format string) bool {
	return format == Instruction || format == ShareGPTFormat || format == Chat
}

// parseInstruction decodes an instruction record.
func parseInstruction(r data.Record) (Conversation, error) {
	if err := data.UnknownFields(r, []string{"instruction", "input", "output", "system", "history"}, `an instruction line has "instruction", "output" and optional "input", "system" and "history"`); err != nil {
		return Conversation{}, err
	}
	return instructionSchema.Conversation(r)
}

// parseShareGPT decodes a sharegpt record ("id", which ShareGPT dumps
// carry, is allowed and ignored).
func parseShareGPT(r data.Record) (Conversation, error) {
	if err := data.UnknownFields(r, []string{"conversations", "system", "tools", "id"}, `a sharegpt line has "conversations" and optional "system" and "tools"`); err != nil {
		return Conversation{}, err
	}
	return shareGPTSchema.Conversation(r)
}

// messageKeys are the keys of a chat message (OpenAI's form, plus the
// reasoning_content of reasoning models' data).
var messageKeys = []string{"role", "content", "tool_calls", "tool_call_id", "name", "reasoning_content"}

// parseChat decodes a chat record.
func parseChat(r data.Record) (Conversation, error) {
	c := Conversation{Loc: r.Loc}
	if err := data.UnknownFields(r, []string{"messages", "tools"}, `a chat line has "messages" and optional "tools"`); err != nil {
		return c, err
	}
	raw := r.Fields["messages"]
	if k := data.JSONKind(raw); k != "an array" {
		return c, data.Errorf(r.Loc, `"messages" must be an array of {"role", "content"} objects, got %s`, k)
	}
	var elems []json.RawMessage
	if err := json.Unmarshal(raw, &elems); err != nil {
		return c, data.Errorf(r.Loc, `"messages": %v`, err)
	}
	if len(elems) == 0 {
		return c, data.Errorf(r.Loc, `"messages" is empty`)
	}
	var err error
	if c.Tools, err = toolsValue(r.Loc, "tools", r.Fields["tools"]); err != nil {
		return c, err
	}
	c.Messages = make([]chat.Message, len(elems))
	for i, e := range elems {
		if c.Messages[i], err = chatMessage(r.Loc, i, e); err != nil {
			return c, err
		}
	}
	return c, nil
}

// chatMessage decodes message i of a chat record.
func chatMessage(loc data.Loc, i int, e json.RawMessage) (chat.Message, error) {
	var m chat.Message
	if k := data.JSONKind(e); k != "an object" {
		return m, data.Errorf(loc, `messages[%d] must be an object with "role" and "content", got %s`, i, k)
	}
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(e, &fields); err != nil {
		return m, data.Errorf(loc, "messages[%d]: %v", i, err)
	}
	var unknown []string
	for k := range fields {
		if !slices.Contains(messageKeys, k) {
			unknown = append(unknown, fmt.Sprintf("%q", k))
		}
	}
	if len(unknown) > 0 {
		sort.Strings(unknown)
		return m, data.Errorf(loc, `messages[%d]: unknown field %s (a message has "role", "content" and optional "tool_calls", "tool_call_id", "name", "reasoning_content")`, i, strings.Join(unknown, ", "))
	}
	name := func(key string) string { return fmt.Sprintf("messages[%d].%s", i, key) }
	var err error
	if m.Role, err = stringValue(loc, name("role"), fields["role"], true); err != nil {
		return m, err
	}
	switch m.Role {
	case chat.System, chat.User, chat.Assistant, chat.Tool:
	default:
		return m, data.Errorf(loc, "messages[%d].role is %q; want %q, %q, %q or %q", i, m.Role, chat.System, chat.User, chat.Assistant, chat.Tool)
	}
	if m.ToolCalls, err = toolCallsValue(loc, name("tool_calls"), fields["tool_calls"]); err != nil {
		return m, err
	}
	if m.ToolCalls != nil && m.Role != chat.Assistant {
		return m, data.Errorf(loc, "%s: only an assistant message calls tools, this is a %s message", name("tool_calls"), m.Role)
	}
	// OpenAI's form gives a message that only calls tools "content": null.
	content, hasContent := fields["content"]
	m.NullContent = hasContent && data.JSONKind(content) == "null" && m.ToolCalls != nil
	if !m.NullContent {
		if m.Content, err = stringValue(loc, name("content"), content, true); err != nil {
			return m, err
		}
	}
	if m.Reasoning, err = stringValue(loc, name("reasoning_content"), fields["reasoning_content"], false); err != nil {
		return m, err
	}
	if m.Reasoning != "" && m.Role != chat.Assistant {
		return m, data.Errorf(loc, "%s: only an assistant message has reasoning, this is a %s message", name("reasoning_content"), m.Role)
	}
	if m.ToolCallID, err = stringValue(loc, name("tool_call_id"), fields["tool_call_id"], false); err != nil {
		return m, err
	}
	m.Name, err = stringValue(loc, name("name"), fields["name"], false)
	return m, err
}

// toolCallsValue checks a message's tool_calls: absent, null or [] is
// none, else a list of {"function": {"name": ..., ...}, ...} objects,
// kept as the data writes them.
func toolCallsValue(loc data.Loc, name string, raw json.RawMessage) (json.RawMessage, error) {
	if raw == nil || data.JSONKind(raw) == "null" {
		return nil, nil
	}
	var calls []struct {
		Function *struct {
			Name *string `json:"name"`
		} `json:"function"`
	}
	if data.JSONKind(raw) != "an array" || json.Unmarshal(raw, &calls) != nil {
		return nil, data.Errorf(loc, `%s must be a list of {"type": "function", "function": {"name", "arguments"}} objects, got %s`, name, data.JSONKind(raw))
	}
	if len(calls) == 0 {
		return nil, nil
	}
	for k, c := range calls {
		if c.Function == nil || c.Function.Name == nil {
			return nil, data.Errorf(loc, `%s[%d] has no "function" with a "name"`, name, k)
		}
	}
	return raw, nil
}

// stringValue decodes the value of field name (raw is nil when the field
// is missing) as a string. A missing field or null is an error when
// required and "" otherwise; any other JSON type is an error naming it.
func stringValue(loc data.Loc, name string, raw json.RawMessage, required bool) (string, error) {
	if raw == nil || data.JSONKind(raw) == "null" {
		if required {
			return "", data.Errorf(loc, "missing %q", name)
		}
		return "", nil
	}
	if k := data.JSONKind(raw); k != "a string" {
		return "", data.Errorf(loc, "%q must be a string, got %s", name, k)
	}
	var s string
	if err := json.Unmarshal(raw, &s); err != nil {
		return "", data.Errorf(loc, "%q: %v", name, err)
	}
	return s, nil
}

// Summary describes a dataset in one line: examples, format, tokens and
// how many of them are trained on.
func Summary(ds *data.Dataset) string {
	tokens, trained := 0, 0
	for i := range ds.Examples {
		e := &ds.Examples[i]
		tokens += len(e.InputIDs)
		trained += e.Targets(len(e.InputIDs))
	}
	return fmt.Sprintf("%d examples (%s) from %s: %d tokens, %d trained on", ds.Len(), ds.Format, ds.Name, tokens, trained)
}
