// Package synth generates deterministic supervised text tasks with exactly
// one right answer: reverse a string, sort its letters, add two numbers,
// map letters through a keyed substitution cipher, copy with a rule, and
// look a key up in a list. They feed the demo, the few-shot and
// continual-learning experiments and the tests: each task is cheap to
// sample, has an exact-match score, and different tasks (or cipher keys)
// are different enough that learning one does not solve another.
//
// Examples are in the instruction format ("instruction", "input",
// "output") that the data package reads.
package synth

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"slices"
	"sort"
	"strconv"
	"strings"

	"github.com/gotune/gotune/engine/fsutil"
)

// Example is one supervised example in the instruction format.
type Example struct {
	Instruction string `json:"instruction"`
	Input       string `json:"input"`
	Output      string `json:"output"`
}

// Task samples examples of one kind.
type Task interface {
	// Name is the task's identifier as accepted by Lookup.
	Name() string
	// Sample draws one example using r.
	Sample(r *rand.Rand) Example
}

const letters = "abcdefghijklmnopqrstuvwxyz"

// randomWord returns a lowercase string of length in [minLen, maxLen].
func randomWord(r *rand.Rand, minLen, maxLen int) string {
	n := minLen + r.IntN(maxLen-minLen+1)
	b := make([]byte, n)
	for i := range b {
		b[i] = letters[r.IntN(len(letters))]
	}
	return string(b)
}

// funcTask adapts a transformation of a random word into a Task.
type funcTask struct {
	name, instruction string
	minLen, maxLen    int
	apply             func(string) string
}

func (t funcTask) Name() string { return t.name }

func (t funcTask) Sample(r *rand.Rand) Example {
	in := randomWord(r, t.minLen, t.maxLen)
	return Example{Instruction: t.instruction, Input: in, Output: t.apply(in)}
}

func reverse(s string) string {
	b := []byte(s)
	slices.Reverse(b)
	return string(b)
}

func sortLetters(s string) string {
	b := []byte(s)
	slices.Sort(b)
	return string(b)
}

func double(s string) string {
	var sb strings.Builder
	for i := 0; i < len(s); i++ {
		sb.WriteByte(s[i])
		sb.WriteByte(s[i])
	}
	return sb.String()
}

// addTask adds two non-negative integers below max.
type addTask struct{ max int }

func (addTask) Name() string { return "add" }

func (t addTask) Sample(r *rand.Rand) Example {
	a, b := r.IntN(t.max), r.IntN(t.max)
	return Example{
		Instruction: "Add the two numbers.",
		Input:       fmt.Sprintf("%d+%d", a, b),
		Output:      strconv.Itoa(a + b),
	}
}

// cipherTask maps each letter through a permutation derived from its key,
// so every key is a distinct task of identical difficulty.
type cipherTask struct {
	key   uint64
	table [26]byte
}

func newCipher(key uint64) *cipherTask {
	t := &cipherTask{key: key}
	perm := []byte(letters)
	r := rand.New(rand.NewPCG(key, 0x9e3779b97f4a7c15))
	r.Shuffle(len(perm), func(i, j int) { perm[i], perm[j] = perm[j], perm[i] })
	copy(t.table[:], perm)
	return t
}

func (t *cipherTask) Name() string { return fmt.Sprintf("cipher:%d", t.key) }

func (t *cipherTask) Sample(r *rand.Rand) Example {
	in := randomWord(r, 3, 8)
	out := make([]byte, len(in))
	for i := 0; i < len(in); i++ {
		out[i] = t.table[in[i]-'a']
	}
	return Example{Instruction: fmt.Sprintf("Encode with cipher %d.", t.key), Input: in, Output: string(out)}
}

// lookupTask lists key=value pairs and asks for one key's value.
type lookupTask struct{}

func (lookupTask) Name() string { return "lookup" }

func (lookupTask) Sample(r *rand.Rand) Example {
	n := 3 + r.IntN(3)
	keys := r.Perm(len(letters))[:n]
	pairs := make([]string, n)
	values := make([]int, n)
	for i, k := range keys {
		values[i] = r.IntN(10)
		pairs[i] = fmt.Sprintf("%c=%d", letters[k], values[i])
	}
	q := r.IntN(n)
	return Example{
		Instruction: "Look up the key.",
		Input:       fmt.Sprintf("%s %c?", strings.Join(pairs, " "), letters[keys[q]]),
		Output:      strconv.Itoa(values[q]),
	}
}

// Family draws tasks of one kind with fresh parameters: meta-learning
// trains on a stream of them.
type Family interface {
	// Name is the family's identifier as accepted by LookupFamily.
	Name() string
	// Draw returns a new task of the family using r.
	Draw(r *rand.Rand) Task
}

// CipherFamilyMinKey is the smallest key the cipher family draws: keys
// below it (the demo's pretraining keys 1-4, its held-out key 7, and any
// other small key) are never drawn, so they stay held out of
// meta-training.
const CipherFamilyMinKey = 1 << 20

// cipherFamily draws substitution ciphers with fresh keys.
type cipherFamily struct{}

func (cipherFamily) Name() string { return "cipher" }

func (cipherFamily) Draw(r *rand.Rand) Task {
	return newCipher(CipherFamilyMinKey + r.Uint64N(1<<62))
}

// FamilyNames lists the families LookupFamily accepts.
func FamilyNames() []string { return []string{"cipher"} }

// LookupFamily returns the task family with the given name.
func LookupFamily(name string) (Family, error) {
	if name == "cipher" {
		return cipherFamily{}, nil
	}
	return nil, fmt.Errorf("synth: unknown task family %q; known: %s", name, strings.Join(FamilyNames(), ", "))
}

// fixedTasks are the tasks without parameters, by name.
var fixedTasks = map[string]Task{
	"reverse": funcTask{"reverse", "Reverse the letters.", 3, 8, reverse},
	"sort":    funcTask{"sort", "Sort the letters.", 3, 8, sortLetters},
	"upper":   funcTask{"upper", "Write in capitals.", 3, 8, strings.ToUpper},
	"double":  funcTask{"double", "Double every letter.", 3, 6, double},
	"add":     addTask{max: 100},
	"lookup":  lookupTask{},
}

// Names lists the task names Lookup accepts ("cipher:K" stands for any
// non-negative integer key K).
func Names() []string {
	names := make([]string, 0, len(fixedTasks)+1)
	for n := range fixedTasks {
		names = append(names, n)
	}
	sort.Strings(names)
	return append(names, "cipher:K")
}

// Lookup returns the task with the given name.
func Lookup(name string) (Task, error) {
	if t, ok := fixedTasks[name]; ok {
		return t, nil
	}
	if k, ok := strings.CutPrefix(name, "cipher:"); ok {
		key, err := strconv.ParseUint(k, 10, 64)
		if err != nil {
			return nil, fmt.Errorf("synth: task %q: cipher key must be a non-negative integer", name)
		}
		return newCipher(key), nil
	}
	return nil, fmt.Errorf("synth: unknown task %q; known: %s", name, strings.Join(Names(), ", "))
}

// Generate draws n examples of task t, deterministically from seed.
func Generate(t Task, n int, seed uint64) []Example {
	r := rand.New(rand.NewPCG(seed, hashName(t.Name())))
	out := make([]Example, n)
	for i := range out {
		out[i] = t.Sample(r)
	}
	return out
}

// hashName gives each task its own random stream for the same seed
// (FNV-1a), so train and eval sets of different tasks never coincide.
func hashName(s string) uint64 {
	h := uint64(14695981039346656037)
	for i := 0; i < len(s); i++ {
		h ^= uint64(s[i])
		h *= 1099511628211
	}
	return h
}

// ExactMatch reports whether a prediction equals the answer, ignoring
// surrounding white space.
func ExactMatch(prediction, answer string) bool {
	return strings.TrimSpace(prediction) == strings.TrimSpace(answer)
}

// WriteJSONL writes examples one JSON object per line.
func WriteJSONL(w io.Writer, examples []Example) error {
	bw := bufio.NewWriter(w)
	enc := json.NewEncoder(bw)
	enc.SetEscapeHTML(false)
	for _, e := range examples {
		if err := enc.Encode(e); err != nil {
			return err
		}
	}
	return bw.Flush()
}

// WriteFile writes examples as JSONL to path atomically.
func WriteFile(path string, examples []Example) error {
	return fsutil.WriteFileAtomic(path, 0o644, func(w io.Writer) error {
		return WriteJSONL(w, examples)
	})
}

// ReadFile reads instruction-format examples from a JSONL file, naming the
// line of any malformed record.
func ReadFile(path string) ([]Example, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []Example
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<26)
	for line := 1; sc.Scan(); line++ {
		if strings.TrimSpace(sc.Text()) == "" {
			continue
		}
		dec := json.NewDecoder(strings.NewReader(sc.Text()))
		dec.DisallowUnknownFields()
		var e Example
		if err := dec.Decode(&e); err != nil {
			return nil, fmt.Errorf("%s:%d: %v", path, line, err)
		}
		out = append(out, e)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("%s: %v", path, err)
	}
	return out, nil
}
