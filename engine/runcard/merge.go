package runcard

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"text/template"

	"github.com/gotune/gotune/engine/fsutil"
	"github.com/gotune/gotune/engine/strictjson"
)

// MergeCard is the record of a merged model (an adapter folded into its
// base model's weights): the README.md of its folder.
type MergeCard struct {
	// Command reproduces the merge (the program and its arguments).
	Command string
	// BaseModel is the base model's folder; Architecture its family.
	BaseModel, Architecture string
	// Adapter is the merged adapter's folder, PeftType its peft_type and
	// Layers how many layers were merged.
	Adapter, PeftType string
	Layers            int
	// AdapterSettings are the adapter's settings (adapter_config.json key
	// → value).
	AdapterSettings map[string]string
	// Weights says what the folder holds (dtype, files).
	Weights string
	// Training is the run that trained the adapter (its summary.json),
	// nil when the adapter folder has none.
	Training *Card
	// Finished is the time of the merge (RFC 3339); Gotune the program's
	// version.
	Finished, Gotune string
}

// WriteMergeCard writes c as README.md into dir, atomically.
func WriteMergeCard(dir string, c *MergeCard) error {
	var buf bytes.Buffer
	if err := mergeTemplate.Execute(&buf, c); err != nil {
		return err
	}
	return fsutil.WriteFileAtomic(filepath.Join(dir, CardFile), 0o644, func(w io.Writer) error {
		_, err := w.Write(buf.Bytes())
		return err
	})
}

// ReadSummary reads the summary.json a training run wrote into dir; a
// folder without one is (nil, nil).
func ReadSummary(dir string) (*Card, error) {
	path := filepath.Join(dir, SummaryFile)
	b, err := os.ReadFile(path)
	if os.IsNotExist(err) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	if err := strictjson.CheckKeys(b); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	var c Card
	if err := json.Unmarshal(b, &c); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return &c, nil
}

var mergeTemplate = template.Must(template.New("merge").Funcs(cardFuncs).Parse(`---
tags:
- gotune
- merge
---

# {{tick .Adapter}} merged into {{tick .BaseModel}}

Made with [gotune](https://github.com/gotune/gotune): the {{.PeftType}} adapter folded into the base model's weights, so the folder is a plain model that needs no adapter support to load.

| | |
|---|---|
| base model | {{tick .BaseModel}}{{if .Architecture}} ({{.Architecture}}){{end}} |
| adapter | {{tick .Adapter}}: {{.PeftType}}{{range $k, $v := .AdapterSettings}}, {{$k}} {{tick $v}}{{end}} |
| merged layers | {{.Layers}} |
| weights | {{.Weights}} |
{{- with .Training}}
| adapter training | {{.Method}} on {{tick .TrainData}}, {{.Steps}} of {{.TotalSteps}} steps ({{.Outcome}}), final loss {{f .FinalLoss}}{{if .FinalEvalLoss}}, eval loss {{pf .FinalEvalLoss}}{{end}} |
{{- end}}
| finished | {{.Finished}} (gotune {{.Gotune}}) |

## Use

` + "```python\nfrom transformers import AutoModelForCausalLM\nmodel = AutoModelForCausalLM.from_pretrained(\"path/to/this/folder\")\n```" + `

## Reproduce

` + "```sh\n{{.Command}}\n```" + `
`))
