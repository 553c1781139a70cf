package fewshot

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/gotune/gotune/engine/chat"
	"github.com/gotune/gotune/engine/data"
	"github.com/gotune/gotune/engine/textdata"
	"github.com/gotune/gotune/engine/tokenizer"
)

// qa is a one-example conversation with a system message.
func qa(line int, q, a string) textdata.Conversation {
	return textdata.Conversation{Loc: data.Loc{File: "t", Line: line}, Messages: chat.FromInstruction("sys", "Do.", q, a)}
}

// TestInContext checks the k-shot prompt: the support turns in support
// order, then the query's, one system message first, the query's
// location; and that the plain template lays it out as consecutive
// examples.
func TestInContext(t *testing.T) {
	task := &Task{Name: "t", Convs: []textdata.Conversation{qa(1, "a", "A"), qa(2, "b", "B"), qa(3, "c", "C")}}
	convs := task.InContext(Split{Support: []int{2, 0}, Query: []int{1}})
	require.Len(t, convs, 1)
	assert.Equal(t, data.Loc{File: "t", Line: 2}, convs[0].Loc)
	roles := make([]string, len(convs[0].Messages))
	for i, m := range convs[0].Messages {
		roles[i] = m.Role
	}
	assert.Equal(t, []string{chat.System, chat.User, chat.Assistant, chat.User, chat.Assistant, chat.User, chat.Assistant}, roles)
	plain, err := chat.Lookup("plain")
	require.NoError(t, err)
	pieces, err := plain.Prompt(convs[0].Messages[:len(convs[0].Messages)-1])
	require.NoError(t, err)
	assert.Equal(t, "<BOS>sys\nDo.\nc\n⟦C⟧⟦<EOS>⟧Do.\na\n⟦A⟧⟦<EOS>⟧Do.\nb\n", chat.String(pieces))
}

// TestEncodeLastReplyLabels checks that only the last reply (and its EOS)
// is scored: the support replies in front are context.
func TestEncodeLastReplyLabels(t *testing.T) {
	tok, err := tokenizer.Load("../../testdata/demo/tokenizer.json")
	require.NoError(t, err)
	plain, err := chat.Lookup("plain")
	require.NoError(t, err)
	s := &Scorer{Encoding: Encoding{Tokenizer: tok, Template: plain, VocabSize: 259}}
	task := &Task{Name: "t", Convs: []textdata.Conversation{qa(1, "ab", "XY"), qa(2, "cd", "ZW")}}
	ex, err := s.encodeLastReply(task.InContext(Split{Support: []int{0}, Query: []int{1}})[0])
	require.NoError(t, err)
	var scored []int32
	for _, l := range ex.Labels {
		if l != chat.IgnoreIndex {
			scored = append(scored, l)
		}
	}
	assert.Equal(t, []int32{'Z', 'W', int32(tok.EOS())}, scored)
	assert.Equal(t, len(ex.InputIDs), len(ex.Labels))
}
