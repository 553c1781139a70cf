package synth

import (
	"bytes"
	"math/rand/v2"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// check recomputes each task's answer from its input by a route independent
// of the generator's code.
func check(t *testing.T, name string, e Example) {
	t.Helper()
	switch name {
	case "reverse":
		for i := 0; i < len(e.Input); i++ {
			assert.Equal(t, e.Input[i], e.Output[len(e.Output)-1-i])
		}
	case "sort":
		assert.Equal(t, len(e.Input), len(e.Output))
		for i := 1; i < len(e.Output); i++ {
			assert.LessOrEqual(t, e.Output[i-1], e.Output[i])
		}
		for _, c := range e.Input {
			assert.Equal(t, strings.Count(e.Input, string(c)), strings.Count(e.Output, string(c)))
		}
	case "add":
		a, b, ok := strings.Cut(e.Input, "+")
		require.True(t, ok)
		x, _ := strconv.Atoi(a)
		y, _ := strconv.Atoi(b)
		assert.Equal(t, strconv.Itoa(x+y), e.Output)
	case "lookup":
		fields := strings.Fields(e.Input)
		q := strings.TrimSuffix(fields[len(fields)-1], "?")
		for _, f := range fields[:len(fields)-1] {
			if k, v, _ := strings.Cut(f, "="); k == q {
				assert.Equal(t, v, e.Output)
			}
		}
	}
}

func TestTasksAreCorrectAndDeterministic(t *testing.T) {
	for _, name := range []string{"reverse", "sort", "upper", "double", "add", "lookup", "cipher:7"} {
		t.Run(name, func(t *testing.T) {
			task, err := Lookup(name)
			require.NoError(t, err)
			a := Generate(task, 200, 42)
			b := Generate(task, 200, 42)
			c := Generate(task, 200, 43)
			assert.Equal(t, a, b, "same seed must give the same examples")
			assert.NotEqual(t, a, c, "different seeds must differ")
			for _, e := range a {
				check(t, name, e)
				assert.NotEmpty(t, e.Instruction)
				assert.NotEmpty(t, e.Output)
			}
		})
	}
}

func TestCipherIsABijectionAndKeysDiffer(t *testing.T) {
	c1, c2 := newCipher(1), newCipher(2)
	seen := map[byte]bool{}
	for _, b := range c1.table {
		seen[b] = true
	}
	assert.Len(t, seen, 26)
	assert.NotEqual(t, c1.table, c2.table)
	e := Generate(c1, 1, 5)[0]
	for i := 0; i < len(e.Input); i++ {
		assert.Equal(t, c1.table[e.Input[i]-'a'], e.Output[i])
	}
}

func TestLookupErrors(t *testing.T) {
	_, err := Lookup("nope")
	assert.ErrorContains(t, err, "unknown task \"nope\"")
	_, err = Lookup("cipher:x")
	assert.ErrorContains(t, err, "cipher key")
}

func TestJSONLRoundTrip(t *testing.T) {
	task, _ := Lookup("add")
	ex := Generate(task, 10, 1)
	path := filepath.Join(t.TempDir(), "a.jsonl")
	require.NoError(t, WriteFile(path, ex))
	back, err := ReadFile(path)
	require.NoError(t, err)
	assert.Equal(t, ex, back)

	var buf bytes.Buffer
	require.NoError(t, WriteJSONL(&buf, ex[:1]))
	assert.Contains(t, buf.String(), `"instruction":"Add the two numbers."`)
}

func TestExactMatch(t *testing.T) {
	assert.True(t, ExactMatch(" 12\n", "12"))
	assert.False(t, ExactMatch("12", "13"))
}

func TestCipherFamilyDrawsFreshKeysAboveTheHeldOutRange(t *testing.T) {
	fam, err := LookupFamily("cipher")
	if err != nil {
		t.Fatal(err)
	}
	r := rand.New(rand.NewPCG(1, 2))
	seen := map[string]bool{}
	for range 100 {
		task := fam.Draw(r)
		c, ok := task.(*cipherTask)
		if !ok {
			t.Fatalf("cipher family drew %T", task)
		}
		if c.key < CipherFamilyMinKey {
			t.Fatalf("drew key %d below CipherFamilyMinKey", c.key)
		}
		if seen[task.Name()] {
			t.Fatalf("drew %s twice", task.Name())
		}
		seen[task.Name()] = true
	}
	// The same stream draws the same keys.
	a := fam.Draw(rand.New(rand.NewPCG(7, 7))).Name()
	b := fam.Draw(rand.New(rand.NewPCG(7, 7))).Name()
	if a != b {
		t.Fatalf("same seed drew %s and %s", a, b)
	}
	if _, err := LookupFamily("reverse"); err == nil {
		t.Fatal("LookupFamily accepted an unknown family")
	}
}
