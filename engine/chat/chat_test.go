package chat

import (
	"encoding/json"
	"slices"
	"strings"
	"testing"

	"github.com/gotune/gotune/engine/tokenizer"
	"github.com/gotune/gotune/internal/bytetok"
	"github.com/stretchr/testify/require"
)

// specials of the test tokenizer, ids 256 and up.
var specials = []string{"<s>", "</s>", "<|im_start|>", "<|im_end|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"}

// byteTokenizer returns a byte-level tokenizer (token id = byte value)
// with the specials above; BOS <s> = 256, EOS </s> = 257.
func byteTokenizer(t *testing.T, specials []string, chatTemplate string) tokenizer.Tokenizer {
	t.Helper()
	dir := t.TempDir()
	if err := bytetok.Write(dir, bytetok.Spec{Specials: specials, BOS: "<s>", EOS: "</s>", ChatTemplate: chatTemplate}); err != nil {
		t.Fatal(err)
	}
	tok, err := tokenizer.Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// expectedTokens turns an annotated layout (the notation of String:
// <BOS>, <EOS>, trained spans in ⟦ ⟧) into token ids and labels for the
// byte tokenizer, independently of the tokenizer and of Encode: special
// strings map to their ids, every other byte to its value.
func expectedTokens(annotated string) (ids, labels []int32) {
	names := map[string]int32{"<BOS>": 256, "<EOS>": 257}
	for i, s := range specials {
		names[s] = int32(256 + i)
	}
	train := false
	for s := annotated; s != ""; {
		if rest, ok := strings.CutPrefix(s, "⟦"); ok {
			train, s = true, rest
			continue
		}
		if rest, ok := strings.CutPrefix(s, "⟧"); ok {
			train, s = false, rest
			continue
		}
		id, n := int32(s[0]), 1
		for name, v := range names {
			if strings.HasPrefix(s, name) {
				id, n = v, len(name)
				break
			}
		}
		ids = append(ids, id)
		if train {
			labels = append(labels, id)
		} else {
			labels = append(labels, IgnoreIndex)
		}
		s = s[n:]
	}
	return ids, labels
}

// promptPart cuts an annotated layout before its last reply: the trailing
// untrained text and the trained spans before it are removed.
func promptPart(annotated string) string {
	s := annotated
	if i := strings.LastIndex(s, "⟧"); i >= 0 {
		s = s[:i+len("⟧")]
	}
	for strings.HasSuffix(s, "⟧") {
		s = s[:strings.LastIndex(s, "⟦")]
	}
	return s
}

func TestTemplates(t *testing.T) {
	instr := FromInstruction("", "Reverse.", "abc", "cba")
	instrSys := FromInstruction("Be brief.", "Reverse.", "abc", "cba")
	noInput := FromInstruction("", "Say hi.", "", "hi")
	multi := []Message{
		{Role: System, Content: "Be brief."},
		{Role: User, Content: "  Q1\n"},
		{Role: Assistant, Content: "A1 "},
		{Role: User, Content: "Q2"},
		{Role: Assistant, Content: "A2"},
	}
	// Tool use, which built-in templates lay out as text (lowerTools).
	tools := []Message{
		{Role: User, Content: "Weather?"},
		{Role: Assistant, ToolCalls: json.RawMessage(`[{"id": "c1", "type": "function", "function": {"name": "w", "arguments": {"c": "P"}}}]`)},
		{Role: Tool, Content: "21", ToolCallID: "c1"},
		{Role: Assistant, Content: "Warm."},
	}
	cases := []struct {
		template string
		msgs     []Message
		want     string
	}{
		{"chatml", tools, "<|im_start|>user\nWeather?<|im_end|>\n<|im_start|>assistant\n⟦{\"name\": \"w\", \"arguments\": {\"c\": \"P\"}}<|im_end|>⟧\n<|im_start|>user\n21<|im_end|>\n<|im_start|>assistant\n⟦Warm.<|im_end|>⟧\n"},
		{"plain", noInput, "<BOS>Say hi.\n⟦hi⟧⟦<EOS>⟧"},
		{"plain", instrSys, "<BOS>Be brief.\nReverse.\nabc\n⟦cba⟧⟦<EOS>⟧"},
		{"plain", multi, "<BOS>Be brief.\n  Q1\n\n⟦A1 ⟧⟦<EOS>⟧Q2\n⟦A2⟧⟦<EOS>⟧"},
		{"alpaca", noInput, "<BOS>Below is an instruction that describes a task. Write a response that appropriately completes the request.\n\n### Instruction:\nSay hi.\n\n### Response:\n⟦hi⟧⟦<EOS>⟧"},
		{"alpaca", instr, "<BOS>Below is an instruction that describes a task, paired with an input that provides further context. Write a response that appropriately completes the request.\n\n### Instruction:\nReverse.\n\n### Input:\nabc\n\n### Response:\n⟦cba⟧⟦<EOS>⟧"},
		{"alpaca", instrSys, "<BOS>Be brief.\n\n### Instruction:\nReverse.\n\n### Input:\nabc\n\n### Response:\n⟦cba⟧⟦<EOS>⟧"},
		{"llama2", instr, "<BOS>[INST] Reverse.\n\nabc [/INST]⟦ cba ⟧⟦<EOS>⟧"},
		// As Hugging Face's Llama-2 template: the system block and the first
		// user message are stripped together, so only the outer white space goes.
		{"llama2", multi, "<BOS>[INST] <<SYS>>\nBe brief.\n<</SYS>>\n\n  Q1 [/INST]⟦ A1 ⟧⟦<EOS>⟧<BOS>[INST] Q2 [/INST]⟦ A2 ⟧⟦<EOS>⟧"},
		{"llama2", []Message{{Role: User, Content: "  Q1\n"}, {Role: Assistant, Content: " A1\n"}}, "<BOS>[INST] Q1 [/INST]⟦ A1 ⟧⟦<EOS>⟧"},
		{"llama3", instrSys, "<BOS><|start_header_id|>system<|end_header_id|>\n\nBe brief.<|eot_id|><|start_header_id|>user<|end_header_id|>\n\nReverse.\n\nabc<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n⟦cba<|eot_id|>⟧"},
		{"llama3", multi, "<BOS><|start_header_id|>system<|end_header_id|>\n\nBe brief.<|eot_id|><|start_header_id|>user<|end_header_id|>\n\nQ1<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n⟦A1<|eot_id|>⟧<|start_header_id|>user<|end_header_id|>\n\nQ2<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n⟦A2<|eot_id|>⟧"},
		{"chatml", instr, "<|im_start|>user\nReverse.\n\nabc<|im_end|>\n<|im_start|>assistant\n⟦cba<|im_end|>⟧\n"},
		{"qwen", multi, "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\n  Q1\n<|im_end|>\n<|im_start|>assistant\n⟦A1 <|im_end|>⟧\n<|im_start|>user\nQ2<|im_end|>\n<|im_start|>assistant\n⟦A2<|im_end|>⟧\n"},
	}
	tok := byteTokenizer(t, specials, "")
	for _, c := range cases {
		t.Run(c.template, func(t *testing.T) {
			tm, err := Lookup(c.template)
			if err != nil {
				t.Fatal(err)
			}
			if err := Check(tm, tok); err != nil {
				t.Fatal(err)
			}
			pieces, err := tm.Render(c.msgs)
			if err != nil {
				t.Fatal(err)
			}
			if got := String(pieces); got != c.want {
				t.Errorf("layout\n got %q\nwant %q", got, c.want)
			}
			// Token level: ids and the exact label mask.
			ids, labels, err := Encode(tok, pieces)
			if err != nil {
				t.Fatal(err)
			}
			wantIDs, wantLabels := expectedTokens(c.want)
			if !slices.Equal(ids, wantIDs) {
				t.Errorf("ids\n got %v\nwant %v", ids, wantIDs)
			}
			if !slices.Equal(labels, wantLabels) {
				t.Errorf("labels\n got %v\nwant %v", labels, wantLabels)
			}
			// The generation prompt is the layout up to the last reply.
			prompt, err := tm.Prompt(c.msgs[:len(c.msgs)-1])
			if err != nil {
				t.Fatal(err)
			}
			if got, want := String(prompt), promptPart(c.want); got != want {
				t.Errorf("prompt\n got %q\nwant %q", got, want)
			}
		})
	}
}

func TestStopIDs(t *testing.T) {
	tok := byteTokenizer(t, specials, "")
	for _, c := range []struct {
		template string
		want     []int32
	}{
		{"plain", []int32{257}},
		{"llama2", []int32{257}},
		{"llama3", []int32{257, 262}},
		{"chatml", []int32{257, 259}},
	} {
		tm, _ := Lookup(c.template)
		if got := StopIDs(tm, tok); !slices.Equal(got, c.want) {
			t.Errorf("%s: stop ids %v, want %v", c.template, got, c.want)
		}
	}
}

func TestTemplateErrors(t *testing.T) {
	u := func(s string) Message { return Message{Role: User, Content: s} }
	a := func(s string) Message { return Message{Role: Assistant, Content: s} }
	s := Message{Role: System, Content: "sys"}
	cases := []struct {
		name, template string
		msgs           []Message
		prompt         bool
		want           string
	}{
		{"empty", "plain", nil, false, "no messages"},
		{"unknown role", "chatml", []Message{u("q"), {Role: "function", Content: "x"}}, false, `messages[1]: unknown role "function"`},
		{"bad tool calls", "chatml", []Message{u("q"), {Role: Assistant, ToolCalls: json.RawMessage(`{"function": {}}`)}}, false, "messages[1].tool_calls: json: cannot unmarshal object"},
		{"late system", "llama3", []Message{u("q"), s, a("x")}, false, "messages[1]: a system message may only come first"},
		{"two users", "llama2", []Message{s, u("q"), u("q2"), a("x")}, false, "messages[2] is a user message where a assistant message was expected"},
		{"starts with reply", "chatml", []Message{a("x")}, false, "messages[0] is a assistant message where a user"},
		{"ends with user", "plain", []Message{u("q"), a("x"), u("q2")}, false, "ends with a user message"},
		{"only system", "plain", []Message{s}, false, "only a system message"},
		{"multi-turn alpaca", "alpaca", []Message{u("q"), a("x"), u("q2"), a("y")}, false, "holds one instruction and its response, but the conversation has 2 user messages"},
		{"prompt ends with reply", "chatml", []Message{u("q"), a("x")}, true, "must end with a user message"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			tm, err := Lookup(c.template)
			if err != nil {
				t.Fatal(err)
			}
			if c.prompt {
				_, err = tm.Prompt(c.msgs)
			} else {
				_, err = tm.Render(c.msgs)
			}
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("error %v, want it to contain %q", err, c.want)
			}
		})
	}
}

// TestWithTools checks that tool definitions reach a model's own template
// as its tools variable, and are refused by a built-in template.
func TestWithTools(t *testing.T) {
	tok := byteTokenizer(t, specials, "")
	j, err := NewJinja("t.jinja", "{% if tools %}{{ tools | tojson }}{% endif %}{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}", tok)
	require.NoError(t, err)
	msgs := []Message{{Role: User, Content: "q"}, {Role: Assistant, Content: "a"}}
	tools := json.RawMessage(`[{"type": "function", "function": {"name": "w", "parameters": {"z": 1, "a": 2.5}}}]`)
	tj, err := WithTools(j, tools)
	require.NoError(t, err)
	ps, err := tj.Render(msgs)
	require.NoError(t, err)
	require.Equal(t, `[{"type": "function", "function": {"name": "w", "parameters": {"z": 1, "a": 2.5}}}]`+"<|im_start|>user\nq<|im_end|>\n<|im_start|>assistant\n⟦a<|im_end|>⟧\n", String(ps))
	ps, err = j.Render(msgs) // j itself is unchanged
	require.NoError(t, err)
	require.Equal(t, "<|im_start|>user\nq<|im_end|>\n<|im_start|>assistant\n⟦a<|im_end|>⟧\n", String(ps))

	same, err := WithTools(j, nil)
	require.NoError(t, err)
	require.Same(t, j, same)
	_, err = WithTools(j, json.RawMessage(`{"name": "w"}`))
	require.ErrorContains(t, err, "tools must be a JSON list")
	chatml, _ := Lookup("chatml")
	_, err = WithTools(chatml, tools)
	require.ErrorContains(t, err, "chat template chatml has no place for tool definitions")
}

func TestCheckMarkers(t *testing.T) {
	plainTok := byteTokenizer(t, []string{"<s>", "</s>"}, "")
	for _, name := range []string{"chatml", "llama3"} {
		tm, _ := Lookup(name)
		err := Check(tm, plainTok)
		if err == nil || !strings.Contains(err.Error(), "is not a token of this tokenizer") {
			t.Errorf("%s with a tokenizer lacking its markers: error %v", name, err)
		}
	}
	for _, name := range []string{"plain", "alpaca", "llama2"} {
		tm, _ := Lookup(name)
		if err := Check(tm, plainTok); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}
}

func TestLookup(t *testing.T) {
	if _, err := Lookup("vicuna"); err == nil || !strings.Contains(err.Error(), "known: alpaca, chatml, llama2, llama3, plain, qwen") {
		t.Errorf("unknown template: %v", err)
	}
	q, err := Lookup("qwen")
	if err != nil || q.Name() != "chatml" {
		t.Errorf("qwen: %v %v", q, err)
	}
}

func TestDefault(t *testing.T) {
	own := "{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
	tm, note, err := Default(byteTokenizer(t, specials, own), "--template")
	require.NoError(t, err)
	require.IsType(t, &Jinja{}, tm, note)
	ps, err := tm.Render([]Message{{Role: User, Content: "q"}, {Role: Assistant, Content: "a"}})
	require.NoError(t, err)
	require.Equal(t, "<|im_start|>user\nq<|im_end|>\n<|im_start|>assistant\n⟦a<|im_end|>⟧\n", String(ps))

	tm, note, err = Default(byteTokenizer(t, specials, ""), "--template")
	require.NoError(t, err)
	require.Equal(t, "plain", tm.Name())
	require.Equal(t, "chat template plain (the tokenizer has no chat_template; choose another with --template)", note, "the note names the option as told")

	_, _, err = Default(byteTokenizer(t, specials, "{% for m in messages %}"), "Template")
	require.ErrorContains(t, err, "chat template tokenizer_config.json chat_template: line 1: unexpected end of template: expected {% else %} or {% endfor %} (choose a built-in template with Template ")
}
