package jinja

import (
	"encoding/json"
	"errors"
	"os"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/gotune/gotune/internal/chatgolden"
)

// TestRealChatTemplates renders every golden conversation (and every
// prefix the label rule renders) with each model's real template and
// compares with the reference renderer's text, or its exception.
func TestRealChatTemplates(t *testing.T) {
	g := chatgolden.Load(t)
	for _, fam := range g.Families {
		t.Run(fam.Family, func(t *testing.T) {
			tmpl, err := Parse(fam.TemplateSource(t))
			require.NoError(t, err)
			for _, c := range fam.Cases {
				msgs, err := FromJSON(c.Messages)
				require.NoError(t, err)
				vars := map[string]Value{}
				for k, raw := range c.Vars {
					vars[k], err = FromJSON(raw)
					require.NoError(t, err)
				}
				for _, r := range c.Renders {
					ctx := map[string]Value{
						"messages":              msgs.([]Value)[:r.N],
						"add_generation_prompt": r.AddGenerationPrompt,
						"bos_token":             fam.BOS,
						"eos_token":             fam.EOS,
					}
					for k, v := range vars {
						ctx[k] = v
					}
					got, err := tmpl.Render(ctx, Options{Now: func() time.Time { return g.Now }})
					if r.Error != "" {
						var re *RaiseError
						require.ErrorAs(t, err, &re, "%s n=%d", c.Name, r.N)
						require.Equal(t, r.Error, re.Message)
						continue
					}
					require.NoError(t, err, "%s n=%d", c.Name, r.N)
					require.Equal(t, r.Text, got, "%s: messages[:%d], add_generation_prompt=%v", c.Name, r.N, r.AddGenerationPrompt)
				}
			}
		})
	}
}

// TestFeatures renders small templates covering the features chat
// templates use (macros, slicing, loop controls, namespaces and scoping,
// Python printing of values, tojson, tests, whitespace control, filters
// and methods) and compares with Jinja2's output
// (testdata/cases.json, from testdata/chat/jinja2_cases.py).
func TestFeatures(t *testing.T) {
	raw, err := os.ReadFile("testdata/cases.json")
	require.NoError(t, err)
	var cases []struct {
		Template string          `json:"template"`
		Vars     json.RawMessage `json:"vars"`
		Want     string          `json:"want"`
	}
	require.NoError(t, json.Unmarshal(raw, &cases))
	require.NotEmpty(t, cases)
	for _, c := range cases {
		tmpl, err := Parse(c.Template)
		require.NoError(t, err, c.Template)
		vars, err := FromJSON(c.Vars)
		require.NoError(t, err)
		ctx := map[string]Value{}
		for _, k := range vars.(*Dict).Keys() {
			ctx[k], _ = vars.(*Dict).Get(k)
		}
		got, err := tmpl.Render(ctx, Options{})
		require.NoError(t, err, c.Template)
		require.Equal(t, c.Want, got, c.Template)
	}
}

// TestErrors checks that bad templates are errors naming the line and
// the problem.
func TestErrors(t *testing.T) {
	for _, c := range []struct{ src, want string }{
		{"a\n{% if x %}", "line 2: unexpected end of template: expected {% elif %} or {% else %} or {% endif %}"},
		{"{{ x + }}", "line 1: unexpected end of tag"},
		{"{% frobnicate %}", "line 1: unknown tag {% frobnicate %}"},
		{"\n\n{{ 'abc }}", "line 3: {{ is never closed with }}"},
		{"{{ x | nosuchfilter }}", "filter nosuchfilter: unknown filter"},
		{"{{ raise_exception('bad roles') }}", "raise_exception: bad roles"},
		{"{{ undefined_thing.attr }}", `"undefined_thing" is undefined`},
	} {
		tmpl, err := Parse(c.src)
		if err == nil {
			_, err = tmpl.Render(nil, Options{})
		}
		require.ErrorContains(t, err, c.want, c.src)
	}
}

// TestTemplateCorpus renders every template of the corpus (the real
// templates of two npm packages) for its conversations and compares with
// Jinja2's text or exception; the known divergences must still diverge.
func TestTemplateCorpus(t *testing.T) {
	c := chatgolden.LoadCorpus(t)
	vars := map[string]map[string]Value{}
	for name, raw := range c.Cases {
		v, err := FromJSON(raw)
		require.NoError(t, err)
		vars[name] = map[string]Value{}
		for _, k := range v.(*Dict).Keys() {
			vars[name][k], _ = v.(*Dict).Get(k)
		}
	}
	compared := 0
	for _, tc := range c.Templates {
		diverged := false
		tmpl, err := Parse(tc.Template)
		if err != nil {
			diverged = true
			require.Contains(t, chatgolden.CorpusDivergences, tc.Source, "%s: %v", tc.Source, err)
			continue
		}
		for _, r := range tc.Renders {
			if r.PythonError != "" {
				continue
			}
			got, err := tmpl.Render(vars[r.Case], Options{Now: func() time.Time { return c.Now }})
			compared++
			var re *RaiseError
			switch {
			case r.Error != "" && errors.As(err, &re) && re.Message == r.Error:
			case r.Error != "" && err != nil && !errors.As(err, &re):
				// Jinja2 refused the template (e.g. the immutable
				// sandbox's "access to attribute 'append' of 'list'
				// object is unsafe"), and so does the engine.
			case r.Error == "" && err == nil && got == r.Text:
			default:
				diverged = true
				if _, known := chatgolden.CorpusDivergences[tc.Source]; !known {
					require.NoError(t, err, "%s, %s", tc.Source, r.Case)
					require.Equal(t, r.Error, "", "%s, %s: want the exception %q", tc.Source, r.Case, r.Error)
					require.Equal(t, r.Text, got, "%s, %s", tc.Source, r.Case)
				}
			}
		}
		if _, known := chatgolden.CorpusDivergences[tc.Source]; known {
			require.True(t, diverged, "%s now renders as Jinja2 does: drop it from chatgolden.CorpusDivergences", tc.Source)
		}
	}
	require.Greater(t, compared, 400)
}
