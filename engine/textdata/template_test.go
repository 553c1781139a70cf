package textdata

import (
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/gotune/gotune/engine/chat"
	"github.com/gotune/gotune/engine/data"
	"github.com/gotune/gotune/engine/tokenizer"
	"github.com/gotune/gotune/internal/chatgolden"
)

// modelTokenizers caches modelTokenizer's tokenizers (loading one takes
// seconds) by family.
var modelTokenizers sync.Map

// modelTokenizer loads a golden family's real tokenizer with the family's
// template as its chat_template, as a model folder has them, so that
// chat.Default picks the model's own template.
func modelTokenizer(t *testing.T, fam chatgolden.Family) tokenizer.Tokenizer {
	if tok, ok := modelTokenizers.Load(fam.Family); ok {
		return tok.(tokenizer.Tokenizer)
	}
	dir, ok := chatgolden.TokenizerDir(t, fam.Tokenizer, fam.TemplateSource(t))
	require.True(t, ok, "no tokenizer for %s", fam.Family)
	tok, err := tokenizer.Load(dir)
	require.NoError(t, err)
	modelTokenizers.Store(fam.Family, tok)
	return tok
}

// trainedText decodes each run of trained tokens of ex.
func trainedText(tok tokenizer.Tokenizer, ex data.Example) []string {
	var out []string
	var run []int
	for i, l := range ex.Labels {
		if l != chat.IgnoreIndex {
			run = append(run, int(ex.InputIDs[i]))
			continue
		}
		if run != nil {
			out = append(out, tok.DecodeWithSpecial(run))
			run = nil
		}
	}
	if run != nil {
		out = append(out, tok.DecodeWithSpecial(run))
	}
	return out
}

// The golden conversations with reasoning (Qwen3's reasoning_content)
// and tool use (tools, tool_calls with arguments as an object or, in
// DeepSeek's, a string and "content": null, tool messages with
// tool_call_id), written as OpenAI chat records, read with the model's
// own template (the tokenizer's chat_template: --template auto): the ids
// are those of the model's real tokenizer for transformers' rendering,
// and exactly the replies (tool calls included) are trained on, each up
// to its end of turn.
func TestModelTemplateToolsAndReasoning(t *testing.T) {
	g := chatgolden.Load(t)
	for _, c := range []struct {
		family, name string
		trained      []string
	}{
		{"qwen3", "reasoning", []string{"Yes.<|im_end|>", "<think>\n9 = 3 × 3.\n</think>\n\nNo.<|im_end|>"}},
		{"qwen3", "tool-call", []string{"<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}}\n</tool_call><|im_end|>", "<think>\n\n</think>\n\nIt is 21 °C in Paris.<|im_end|>"}},
		{"llama3.1", "tool-call", []string{`{"name": "get_weather", "parameters": {"city": "Paris"}}<|eot_id|>`, "It is 21 °C in Paris.<|eot_id|>"}},
		{"mistral-nemo", "tool-call", []string{`[TOOL_CALLS][{"name": "get_weather", "arguments": {"city": "Paris"}, "id": "call0001a"}]</s>`, "It is 21 °C in Paris.</s>"}},
		{"deepseek-v3", "tool-call-deepseek", []string{"<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>function<｜tool▁sep｜>get_weather\n```json\n{\"city\": \"Paris\"}\n```<｜tool▁call▁end｜>", "It is 21 °C in Paris.<｜end▁of▁sentence｜>"}},
	} {
		t.Run(c.family+"/"+c.name, func(t *testing.T) {
			fam := g.Family(t, c.family)
			gc := fam.Case(t, c.name)
			record := map[string]json.RawMessage{"messages": gc.Messages}
			if tools, ok := gc.Vars["tools"]; ok {
				record["tools"] = tools
			}
			line, err := json.Marshal(record)
			require.NoError(t, err)
			tok := modelTokenizer(t, fam)
			ds, err := Open(writeFile(t, "chat.jsonl", string(line)+"\n"), Options{Tokenizer: tok})
			require.NoError(t, err)
			require.Equal(t, Chat, ds.Format)
			ex := ds.Examples[0]
			assert.Equal(t, gc.Renders[0].IDs, ex.InputIDs)
			assert.Equal(t, c.trained, trainedText(tok, ex))
		})
	}
}

// shareGPTToolRecord is the golden tool-call conversation in
// LLaMA-Factory's sharegpt form, its turns and tool definitions in the
// columns named.
func shareGPTToolRecord(t *testing.T, messages, tools string) string {
	def := `{"name": "get_weather", "description": "Get the current weather in a city", "parameters": {"type": "object", "properties": {"city": {"type": "string", "description": "The city"}}, "required": ["city"]}}`
	toolsJSON, err := json.Marshal("[" + def + "]")
	require.NoError(t, err)
	call, err := json.Marshal(`{"name": "get_weather", "arguments": {"city": "Paris"}}`)
	require.NoError(t, err)
	return fmt.Sprintf(`{%q: [{"from": "human", "value": "Weather in Paris?"}, {"from": "function_call", "value": %s}, {"from": "observation", "value": "{\"temp_c\": 21}"}, {"from": "gpt", "value": "It is 21 °C in Paris."}], %q: %s}`, messages, call, tools, toolsJSON)
}

// A dataset_info.json entry mapping the messages and tools columns of
// such data reads it as the sharegpt format does.
func TestRegistryToolUse(t *testing.T) {
	fam := chatgolden.Load(t).Family(t, "qwen3")
	dir := writeRegistry(t, `{"calls": {"file_name": "calls.jsonl", "formatting": "sharegpt", "columns": {"messages": "turns", "tools": "functions"}}}`,
		map[string]string{"calls.jsonl": shareGPTToolRecord(t, "turns", "functions") + "\n"})
	ds, err := OpenRegistry(dir, []string{"calls"}, Options{Tokenizer: modelTokenizer(t, fam)})
	require.NoError(t, err)
	assert.Equal(t, fam.Case(t, "tool-call").Renders[0].IDs, ds.Examples[0].InputIDs)
}

// LLaMA-Factory's sharegpt form of a tool-use conversation (a
// function_call turn holding {"name", "arguments"}, an observation turn,
// and the tool definitions as a JSON string without OpenAI's wrapper)
// tokenizes exactly as the OpenAI form does; a template that needs what
// the form cannot hold (Mistral's tool call ids) is a one-line error.
func TestShareGPTToolUse(t *testing.T) {
	g := chatgolden.Load(t)
	path := writeFile(t, "share.jsonl", shareGPTToolRecord(t, "conversations", "tools")+"\n")
	for _, family := range []string{"qwen3", "llama3.1"} {
		t.Run(family, func(t *testing.T) {
			fam := g.Family(t, family)
			tok := modelTokenizer(t, fam)
			ds, err := Open(path, Options{Tokenizer: tok})
			require.NoError(t, err)
			require.Equal(t, ShareGPTFormat, ds.Format)
			want := fam.Case(t, "tool-call").Renders[0].IDs
			assert.Equal(t, want, ds.Examples[0].InputIDs)
			assert.Len(t, trainedText(tok, ds.Examples[0]), 2)
		})
	}
	_, err := Open(path, Options{Tokenizer: modelTokenizer(t, g.Family(t, "mistral-nemo"))})
	require.ErrorContains(t, err, path+":1: chat template tokenizer_config.json chat_template: the template raised an exception: Tool call IDs should be alphanumeric strings with length 9!")
	require.NotContains(t, err.Error(), "\n")
	assert.True(t, strings.HasPrefix(err.Error(), path))
}
