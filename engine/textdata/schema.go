package textdata

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"

	"github.com/gotune/gotune/engine/chat"
	"github.com/gotune/gotune/engine/data"
)

// Formattings of a Schema: LLaMA-Factory's two record layouts.
const (
	// Alpaca records hold a prompt, an optional query, a response, and
	// optionally a system prompt and a history of earlier exchanges.
	Alpaca = "alpaca"
	// ShareGPT records hold a list of messages, each with a role and a
	// content.
	ShareGPT = "sharegpt"
)

// Schema says where the parts of a conversation are in a record: the
// columns and tags of an entry of LLaMA-Factory's dataset_info.json
// (data/README.md there). A column or tag that is "" is not used.
type Schema struct {
	// Formatting is Alpaca or ShareGPT.
	Formatting string
	// Alpaca columns: the instruction (prompt), its input (query), the
	// reply (response), and earlier [prompt, response] pairs (history).
	Prompt, Query, Response, History string
	// Messages is the ShareGPT column holding the turns.
	Messages string
	// System holds a system prompt (both formattings); Tools the tool
	// definitions the conversation may call (see toolsValue).
	System, Tools string
	// RoleTag and ContentTag are the keys of a ShareGPT message.
	RoleTag, ContentTag string
	// The values of RoleTag for each kind of turn. A function call (its
	// content a JSON {"name", "arguments"} object or a list of them) is an
	// assistant message with those tool_calls, trained on; an observation
	// (a tool's result) is a tool message, as transformers is given them.
	UserTag, AssistantTag, ObservationTag, FunctionTag, SystemTag string
	// QueryInSlot hands the query to the template as chat.Message.Input
	// (the alpaca template's "### Input:" section) instead of joining it
	// to the prompt with a newline, as LLaMA-Factory does.
	QueryInSlot bool
}

// instructionSchema is the built-in instruction format: Stanford Alpaca's
// fields plus LLaMA-Factory's optional system and history.
var instructionSchema = Schema{
	Formatting: Alpaca, Prompt: "instruction", Query: "input", Response: "output",
	System: "system", History: "history", QueryInSlot: true,
}

// shareGPTSchema is the built-in sharegpt format, with LLaMA-Factory's
// default columns and tags.
var shareGPTSchema = Schema{
	Formatting: ShareGPT, Messages: "conversations", System: "system", Tools: "tools",
	RoleTag: "from", ContentTag: "value", UserTag: "human", AssistantTag: "gpt",
	ObservationTag: "observation", FunctionTag: "function_call", SystemTag: "system",
}

// columns lists the schema's columns by their dataset_info.json name.
func (s *Schema) columns() [][2]string {
	all := [][2]string{{"system", s.System}, {"tools", s.Tools}}
	if s.Formatting == Alpaca {
		all = append(all, [2]string{"prompt", s.Prompt}, [2]string{"query", s.Query}, [2]string{"response", s.Response}, [2]string{"history", s.History})
	} else {
		all = append(all, [2]string{"messages", s.Messages})
	}
	var out [][2]string
	for _, c := range all {
		if c[1] != "" {
			out = append(out, c)
		}
	}
	return out
}

// Conversation converts one record into a conversation.
func (s *Schema) Conversation(r data.Record) (Conversation, error) {
	c := Conversation{Loc: r.Loc}
	var err error
	if s.Tools != "" {
		if c.Tools, err = toolsValue(r.Loc, s.Tools, r.Fields[s.Tools]); err != nil {
			return c, err
		}
	}
	if s.Formatting == ShareGPT {
		c.Messages, err = s.shareGPT(r)
	} else {
		c.Messages, err = s.alpaca(r)
	}
	return c, err
}

// alpaca builds user/assistant turns from the history, then the prompt
// (with its query) and the response, after an optional system message.
func (s *Schema) alpaca(r data.Record) ([]chat.Message, error) {
	var v struct{ prompt, query, response, system string }
	for _, f := range []struct {
		col      string
		dst      *string
		required bool
	}{{s.Prompt, &v.prompt, true}, {s.Query, &v.query, false}, {s.Response, &v.response, true}, {s.System, &v.system, false}} {
		if f.col == "" {
			continue
		}
		str, err := stringValue(r.Loc, f.col, r.Fields[f.col], f.required)
		if err != nil {
			return nil, err
		}
		*f.dst = str
	}
	var msgs []chat.Message
	if v.system != "" {
		msgs = append(msgs, chat.Message{Role: chat.System, Content: v.system})
	}
	if s.History != "" {
		hist, err := historyValue(r.Loc, s.History, r.Fields[s.History])
		if err != nil {
			return nil, err
		}
		msgs = append(msgs, hist...)
	}
	user := chat.Message{Role: chat.User, Content: v.prompt, Input: v.query}
	if !s.QueryInSlot {
		user = chat.Message{Role: chat.User, Content: joinNonEmpty(v.prompt, v.query)}
	}
	return append(msgs, user, chat.Message{Role: chat.Assistant, Content: v.response}), nil
}

// joinNonEmpty joins the non-empty parts with newlines ("prompt\nquery").
func joinNonEmpty(parts ...string) string {
	var keep []string
	for _, p := range parts {
		if p != "" {
			keep = append(keep, p)
		}
	}
	return strings.Join(keep, "\n")
}

// historyValue decodes an alpaca history: a list of [prompt, response]
// string pairs (absent or null: none), earlier turns of the conversation.
func historyValue(loc data.Loc, col string, raw json.RawMessage) ([]chat.Message, error) {
	if raw == nil || data.JSONKind(raw) == "null" {
		return nil, nil
	}
	var pairs []json.RawMessage
	if data.JSONKind(raw) != "an array" || json.Unmarshal(raw, &pairs) != nil {
		return nil, data.Errorf(loc, "%q must be a list of [prompt, response] pairs, got %s", col, data.JSONKind(raw))
	}
	var msgs []chat.Message
	for i, p := range pairs {
		var pair []json.RawMessage
		if data.JSONKind(p) != "an array" || json.Unmarshal(p, &pair) != nil || len(pair) != 2 {
			return nil, data.Errorf(loc, "%s[%d] must be a [prompt, response] pair of strings", col, i)
		}
		for j, role := range []string{chat.User, chat.Assistant} {
			text, err := stringValue(loc, fmt.Sprintf("%s[%d][%d]", col, i, j), pair[j], true)
			if err != nil {
				return nil, err
			}
			msgs = append(msgs, chat.Message{Role: role, Content: text})
		}
	}
	return msgs, nil
}

// shareGPT maps the tagged turns onto chat roles. As in LLaMA-Factory, a
// first message with the system tag is the system prompt (else the
// system column is), and the rest must alternate: user or observation
// turns first, then assistant or function-call turns, ending with one.
func (s *Schema) shareGPT(r data.Record) ([]chat.Message, error) {
	raw, ok := r.Fields[s.Messages]
	if !ok || data.JSONKind(raw) == "null" {
		return nil, data.Errorf(r.Loc, "missing %q", s.Messages)
	}
	var elems []json.RawMessage
	if data.JSONKind(raw) != "an array" || json.Unmarshal(raw, &elems) != nil {
		return nil, data.Errorf(r.Loc, "%q must be a list of {%q, %q} objects, got %s", s.Messages, s.RoleTag, s.ContentTag, data.JSONKind(raw))
	}
	var msgs []chat.Message
	system := ""
	if s.System != "" {
		var err error
		if system, err = stringValue(r.Loc, s.System, r.Fields[s.System], false); err != nil {
			return nil, err
		}
	}
	for i, e := range elems {
		role, content, err := s.turn(r.Loc, i, e)
		if err != nil {
			return nil, err
		}
		if i == 0 && s.SystemTag != "" && role == s.SystemTag {
			system = content
			continue
		}
		mapped, err := s.role(r.Loc, i, role, len(msgs))
		if err != nil {
			return nil, err
		}
		m := chat.Message{Role: mapped, Content: content}
		switch {
		case role == s.FunctionTag:
			calls, err := functionCalls(r.Loc, fmt.Sprintf("%s[%d].%s", s.Messages, i, s.ContentTag), content)
			if err != nil {
				return nil, err
			}
			m = chat.Message{Role: chat.Assistant, ToolCalls: calls}
		case role == s.ObservationTag:
			m.Role = chat.Tool
		}
		msgs = append(msgs, m)
	}
	if len(msgs) == 0 || len(msgs)%2 != 0 {
		return nil, data.Errorf(r.Loc, "%q has %d turns after the system prompt; it needs user and assistant turns in pairs, ending with the assistant's", s.Messages, len(msgs))
	}
	if system != "" {
		msgs = append([]chat.Message{{Role: chat.System, Content: system}}, msgs...)
	}
	return msgs, nil
}

// functionCalls turns the content of a ShareGPT function call, a JSON
// {"name", "arguments"} object or a list of them (LLaMA-Factory's form),
// into OpenAI's tool_calls: [{"type": "function", "function": call}, ...]
// with each call as the data writes it.
func functionCalls(loc data.Loc, name, content string) (json.RawMessage, error) {
	raw := json.RawMessage(content)
	calls := []json.RawMessage{raw}
	if data.JSONKind(raw) == "an array" {
		if err := json.Unmarshal(raw, &calls); err != nil {
			return nil, data.Errorf(loc, "%s: %v", name, err)
		}
	}
	var b bytes.Buffer
	b.WriteByte('[')
	for k, c := range calls {
		var call struct {
			Name *string `json:"name"`
		}
		if data.JSONKind(c) != "an object" || json.Unmarshal(c, &call) != nil || call.Name == nil {
			return nil, data.Errorf(loc, `%s: a function call must be JSON {"name": ..., "arguments": ...} or a list of them`, name)
		}
		if k > 0 {
			b.WriteString(", ")
		}
		b.WriteString(`{"type": "function", "function": `)
		b.Write(bytes.TrimSpace(c))
		b.WriteByte('}')
	}
	b.WriteByte(']')
	return b.Bytes(), nil
}

// toolsValue decodes the tool definitions of column col: a JSON list, or
// a string holding one (LLaMA-Factory stores them so); absent, null, ""
// or [] is none. A definition without OpenAI's {"type": "function",
// "function": ...} wrapper (LLaMA-Factory's {"name", "description",
// "parameters"}) is wrapped in one, the form chat templates expect.
func toolsValue(loc data.Loc, col string, raw json.RawMessage) (json.RawMessage, error) {
	if data.JSONKind(raw) == "a string" {
		var s string
		if err := json.Unmarshal(raw, &s); err != nil {
			return nil, data.Errorf(loc, "%q: %v", col, err)
		}
		if strings.TrimSpace(s) == "" {
			return nil, nil
		}
		raw = json.RawMessage(s)
		if !json.Valid(raw) {
			return nil, data.Errorf(loc, "%q must be a JSON list of tool definitions; the string it holds is not JSON", col)
		}
	}
	if raw == nil || data.JSONKind(raw) == "null" {
		return nil, nil
	}
	var defs []json.RawMessage
	if data.JSONKind(raw) != "an array" || json.Unmarshal(raw, &defs) != nil {
		return nil, data.Errorf(loc, "%q must be a JSON list of tool definitions, got %s", col, data.JSONKind(raw))
	}
	if len(defs) == 0 {
		return nil, nil
	}
	var b bytes.Buffer
	b.WriteByte('[')
	for k, d := range defs {
		var def map[string]json.RawMessage
		if data.JSONKind(d) != "an object" || json.Unmarshal(d, &def) != nil {
			return nil, data.Errorf(loc, "%s[%d] must be a tool definition (an object), got %s", col, k, data.JSONKind(d))
		}
		if k > 0 {
			b.WriteString(", ")
		}
		_, wrapped := def["function"]
		if _, named := def["name"]; named && !wrapped {
			b.WriteString(`{"type": "function", "function": `)
			b.Write(bytes.TrimSpace(d))
			b.WriteByte('}')
			continue
		}
		b.Write(bytes.TrimSpace(d))
	}
	b.WriteByte(']')
	return b.Bytes(), nil
}

// turn decodes message i's role and content.
func (s *Schema) turn(loc data.Loc, i int, e json.RawMessage) (role, content string, err error) {
	var fields map[string]json.RawMessage
	if data.JSONKind(e) != "an object" || json.Unmarshal(e, &fields) != nil {
		return "", "", data.Errorf(loc, "%s[%d] must be an object with %q and %q, got %s", s.Messages, i, s.RoleTag, s.ContentTag, data.JSONKind(e))
	}
	if role, err = stringValue(loc, fmt.Sprintf("%s[%d].%s", s.Messages, i, s.RoleTag), fields[s.RoleTag], true); err != nil {
		return "", "", err
	}
	content, err = stringValue(loc, fmt.Sprintf("%s[%d].%s", s.Messages, i, s.ContentTag), fields[s.ContentTag], true)
	return role, content, err
}

// role maps a tag onto a chat role, checking it fits turn position n
// (even: user side, odd: assistant side).
func (s *Schema) role(loc data.Loc, i int, tag string, n int) (string, error) {
	userSide, assistantSide := []string{s.UserTag, s.ObservationTag}, []string{s.AssistantTag, s.FunctionTag}
	want, mapped := userSide, chat.User
	if n%2 == 1 {
		want, mapped = assistantSide, chat.Assistant
	}
	for _, t := range want {
		if t != "" && tag == t {
			return mapped, nil
		}
	}
	var names []string
	for _, t := range want {
		if t != "" {
			names = append(names, fmt.Sprintf("%q", t))
		}
	}
	return "", data.Errorf(loc, "%s[%d].%s is %q; turn %d of the conversation must be %s", s.Messages, i, s.RoleTag, tag, n+1, strings.Join(names, " or "))
}
