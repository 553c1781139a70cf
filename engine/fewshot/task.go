package fewshot

import (
	"fmt"
	"math/rand/v2"

	"github.com/gotune/gotune/engine/chat"
	"github.com/gotune/gotune/engine/data"
	"github.com/gotune/gotune/engine/synth"
	"github.com/gotune/gotune/engine/textdata"
	"github.com/gotune/gotune/engine/tokenizer"
)

// Task is one task's examples: tokenized for training, and (for
// instruction and chat data) as conversations for exact-match scoring.
type Task struct {
	// Name identifies the task: its file, or its synthetic name.
	Name string
	// Examples are the tokenized examples.
	Examples []data.Example
	// Convs, when not nil, holds the conversation of each example (same
	// order): the answers exact match checks.
	Convs []textdata.Conversation
}

// Scorable reports whether the task has answers for exact match.
func (t *Task) Scorable() bool { return t.Convs != nil }

// LoadTask reads a task file in any format textdata reads. Instruction
// and chat files are scorable.
func LoadTask(path string, opts textdata.Options) (*Task, error) {
	ds, err := textdata.Open(path, opts)
	if err != nil {
		return nil, err
	}
	t := &Task{Name: path, Examples: ds.Examples}
	if textdata.IsConversational(ds.Format) {
		if t.Convs, _, err = textdata.ReadConversations(path, ds.Format); err != nil {
			return nil, err
		}
		if len(t.Convs) != len(t.Examples) {
			return nil, fmt.Errorf("%s: %d conversations but %d examples", path, len(t.Convs), len(t.Examples))
		}
	}
	return t, nil
}

// Encoding is how synthetic examples become model input: the tokenizer,
// the chat template and the model's vocabulary size.
type Encoding struct {
	Tokenizer tokenizer.Tokenizer
	Template  chat.Template
	VocabSize int
}

// SynthTask draws n examples of a synthetic task, deterministically from
// seed, and encodes them.
func SynthTask(st synth.Task, n int, seed uint64, enc Encoding) (*Task, error) {
	t := &Task{Name: st.Name()}
	for i, x := range synth.Generate(st, n, seed) {
		c := textdata.Conversation{
			Loc:      data.Loc{File: st.Name(), Line: i + 1},
			Messages: chat.FromInstruction("", x.Instruction, x.Input, x.Output),
		}
		ex, err := textdata.EncodeConversation(c, enc.Template, enc.Tokenizer, enc.VocabSize)
		if err != nil {
			return nil, err
		}
		t.Examples = append(t.Examples, ex)
		t.Convs = append(t.Convs, c)
	}
	return t, nil
}

// Split is a disjoint draw of support and query examples of a task, as
// indices into its examples.
type Split struct {
	Support, Query []int
}

// Split draws k support and q query examples without overlap, using r.
// q < 0 takes every example not in the support set.
func (t *Task) Split(r *rand.Rand, k, q int) (Split, error) {
	n := len(t.Examples)
	if q < 0 {
		q = n - k
	}
	if k < 1 || k+q > n || q < 0 {
		return Split{}, fmt.Errorf("%s has %d examples: too few for %d support and %d query examples", t.Name, n, k, max(q, 0))
	}
	perm := r.Perm(n)
	return Split{Support: perm[:k], Query: perm[k : k+q]}, nil
}

// examples returns the examples at idx.
func (t *Task) examples(idx []int) []data.Example {
	out := make([]data.Example, len(idx))
	for i, j := range idx {
		out[i] = t.Examples[j]
	}
	return out
}

// conversations returns the conversations at idx.
func (t *Task) conversations(idx []int) []textdata.Conversation {
	out := make([]textdata.Conversation, len(idx))
	for i, j := range idx {
		out[i] = t.Convs[j]
	}
	return out
}
