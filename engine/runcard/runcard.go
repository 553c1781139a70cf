// Package runcard writes the record of a training run into its output
// folder: summary.json (machine-readable) and README.md, a model card in
// the Hugging Face style (YAML front matter, then the base model, the
// method and its settings, the data, the losses, the time, the hardware
// and the command that reproduces the run).
package runcard

import (
	"bytes"
	"fmt"
	"io"
	"math"
	"path/filepath"
	"strings"
	"text/template"

	"github.com/gotune/gotune/engine/fsutil"
	"github.com/gotune/gotune/engine/train"
)

// File names written by Write.
const (
	SummaryFile = "summary.json"
	CardFile    = "README.md"
)

// Outcomes of a run.
const (
	Completed    = "completed"
	Interrupted  = "interrupted"
	EarlyStopped = "early stopping"
)

// Card is a run's record; its JSON form is summary.json.
type Card struct {
	// Command reproduces the run (the program and its arguments).
	Command string `json:"command"`
	// BaseModel is the model the run started from (a folder).
	BaseModel    string `json:"base_model"`
	Architecture string `json:"architecture,omitempty"`
	// Method is the fine-tuning method; MethodSettings its own settings
	// (flag name → value).
	Method         string            `json:"method"`
	MethodSettings map[string]string `json:"method_settings,omitempty"`
	// Output says what the folder holds ("PEFT adapter", "full model").
	Output string `json:"output"`
	// PeftType is the adapter's peft_type (adapter_config.json); empty
	// for a whole model.
	PeftType string `json:"peft_type,omitempty"`
	// Trainable and TotalParams count parameters.
	Trainable   int64 `json:"trainable_params"`
	TotalParams int64 `json:"total_params"`
	// Settings are the run's other settings (learning rate, batches...),
	// flag name → value.
	Settings map[string]string `json:"settings"`

	TrainData      string `json:"train_data"`
	TrainSequences int    `json:"train_sequences"`
	TrainTokens    int    `json:"train_tokens"`
	EvalData       string `json:"eval_data,omitempty"`

	// Outcome is Completed, Interrupted or EarlyStopped.
	Outcome    string  `json:"outcome"`
	Steps      int     `json:"steps"`
	TotalSteps int     `json:"total_steps"`
	Epochs     float64 `json:"epochs"`
	// TokensTrained sums the counted tokens of every step.
	TokensTrained int `json:"tokens_trained"`

	FinalLoss     float64  `json:"final_loss"`
	BestLoss      float64  `json:"best_loss"`
	BestLossStep  int      `json:"best_loss_step"`
	FinalEvalLoss *float64 `json:"final_eval_loss,omitempty"`
	BestEvalLoss  *float64 `json:"best_eval_loss,omitempty"`
	BestEvalStep  int      `json:"best_eval_step,omitempty"`
	// BestDir is the folder holding the best model, when it was kept.
	BestDir string `json:"best_dir,omitempty"`
	// EvalExactMatch is the share of evaluation records answered exactly
	// (greedy), when it was measured; EvalExactMatchOf the records.
	EvalExactMatch   *float64 `json:"eval_exact_match,omitempty"`
	EvalExactMatchOf int      `json:"eval_exact_match_of,omitempty"`

	ElapsedS     float64 `json:"elapsed_s"`
	TokensPerS   float64 `json:"tokens_per_s"`
	PeakMemBytes uint64  `json:"peak_mem_bytes,omitempty"`
	// Device is the backend that trained; Host the machine (OS, CPU
	// architecture, cores).
	Device    string `json:"device"`
	Host      string `json:"host"`
	Precision string `json:"precision"`
	// Finished is the time the run ended (RFC 3339).
	Finished string `json:"finished"`
	// Gotune is the program's version (its module version, or "devel").
	Gotune string `json:"gotune"`
}

// AddHistory fills the step counts and losses from the run's metrics
// (the whole run's, metrics.jsonl, also after a resume).
func (c *Card) AddHistory(hist []train.StepMetrics) {
	c.BestLoss = math.Inf(1)
	for _, m := range hist {
		c.Steps = m.Step
		c.Epochs = m.Epoch
		c.TokensTrained += m.Tokens
		c.FinalLoss = m.Loss
		c.ElapsedS = m.ElapsedS
		c.PeakMemBytes = max(c.PeakMemBytes, m.PeakMemBytes)
		if m.Loss < c.BestLoss {
			c.BestLoss, c.BestLossStep = m.Loss, m.Step
		}
		if l, ok := m.Eval[train.EvalLossMetric]; ok {
			l := l
			c.FinalEvalLoss = &l
		}
	}
	if len(hist) == 0 {
		c.BestLoss = 0
	}
	if c.ElapsedS > 0 {
		c.TokensPerS = float64(c.TokensTrained) / c.ElapsedS
	}
}

// Write writes summary.json and README.md into dir, each atomically.
func Write(dir string, c *Card) error {
	if err := fsutil.WriteJSONAtomic(filepath.Join(dir, SummaryFile), c); err != nil {
		return err
	}
	return fsutil.WriteFileAtomic(filepath.Join(dir, CardFile), 0o644, func(w io.Writer) error {
		return c.WriteMarkdown(w)
	})
}

// WriteMarkdown writes the model card.
func (c *Card) WriteMarkdown(w io.Writer) error {
	var buf bytes.Buffer
	if err := cardTemplate.Execute(&buf, c); err != nil {
		return err
	}
	_, err := w.Write(buf.Bytes())
	return err
}

// BottleneckType is the peft_type of gotune's bottleneck adapters, which
// PEFT has no loader for.
const BottleneckType = "BOTTLENECK"

// cardFuncs format a card's numbers and names in Markdown.
var cardFuncs = template.FuncMap{
	"f":   func(x float64) string { return fmt.Sprintf("%.4f", x) },
	"pf":  func(x *float64) string { return fmt.Sprintf("%.4f", *x) },
	"pct": func(x *float64) string { return fmt.Sprintf("%.1f%%", 100**x) },
	"mib": func(b uint64) string { return fmt.Sprintf("%.1f MiB", float64(b)/(1<<20)) },
	"dur": func(s float64) string { return fmt.Sprintf("%.1f s", s) },
	"int": func(n int64) string { return fmt.Sprintf("%d", n) },
	"tick": func(s string) string {
		return "`" + strings.ReplaceAll(s, "`", "'") + "`"
	},
}

var cardTemplate = template.Must(template.New("card").Funcs(cardFuncs).Parse(`---
{{- if .PeftType}}
library_name: peft
{{- end}}
tags:
- gotune
- {{.Method}}
---

# {{.Method}} fine-tune of {{tick .BaseModel}}

Trained with [gotune](https://github.com/gotune/gotune): {{.Output}}, {{int .Trainable}} of {{int .TotalParams}} parameters trained.

| | |
|---|---|
| base model | {{tick .BaseModel}}{{if .Architecture}} ({{.Architecture}}){{end}} |
| method | {{.Method}}{{range $k, $v := .MethodSettings}}, {{$k}} {{tick $v}}{{end}} |
| data | {{tick .TrainData}}: {{.TrainSequences}} sequences, {{.TrainTokens}} tokens |
{{- if .EvalData}}
| evaluation data | {{tick .EvalData}} |
{{- end}}
| steps | {{.Steps}} of {{.TotalSteps}} ({{.Outcome}}), {{printf "%.2f" .Epochs}} epochs, {{.TokensTrained}} tokens trained |
| training loss | final {{f .FinalLoss}}, best {{f .BestLoss}} (step {{.BestLossStep}}) |
{{- if .FinalEvalLoss}}
| eval loss | final {{pf .FinalEvalLoss}}{{if .BestEvalLoss}}, best {{pf .BestEvalLoss}} (step {{.BestEvalStep}}){{end}} |
{{- end}}
{{- if .BestDir}}
| best model | {{tick .BestDir}} (lowest eval loss) |
{{- end}}
{{- if .EvalExactMatch}}
| eval exact match | {{pct .EvalExactMatch}} of {{.EvalExactMatchOf}} records (greedy) |
{{- end}}
| time | {{dur .ElapsedS}} training, {{printf "%.0f" .TokensPerS}} tokens/s |
| hardware | {{.Device}}; {{.Host}}{{if .PeakMemBytes}}; peak memory {{mib .PeakMemBytes}}{{end}} |
| precision | {{.Precision}} |
| finished | {{.Finished}} (gotune {{.Gotune}}) |

## Settings

| setting | value |
|---|---|
{{- range $k, $v := .Settings}}
| {{$k}} | {{tick $v}} |
{{- end}}

## Reproduce

` + "```sh\n{{.Command}}\n```" + `

The resolved settings are in ` + "`config.yaml`" + ` (` + "`gotune train --config config.yaml`" + `),
every step's metrics in ` + "`metrics.jsonl`" + `, the loss curve in ` + "`loss.png`" + `,
and this card's numbers in ` + "`summary.json`" + `.
{{- if eq .PeftType "BOTTLENECK"}}

## Use

A bottleneck adapter (peft_type BOTTLENECK, gotune's extension of the
PEFT layout): PEFT has no loader for it; use ` + "`gotune generate` or `gotune eval`" + ` with ` + "`--adapter`" + `.
{{- else if .PeftType}}

## Use

` + "```python\nfrom peft import AutoPeftModelForCausalLM\nmodel = AutoPeftModelForCausalLM.from_pretrained(\"path/to/this/folder\")\n```" + `

(The base model is read from ` + "`base_model_name_or_path`" + ` in ` + "`adapter_config.json`" + `.)
{{- end}}
`))
