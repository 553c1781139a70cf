package finetune

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"strings"
	"time"

	"github.com/gotune/gotune/engine"
	"github.com/gotune/gotune/engine/data"
	"github.com/gotune/gotune/engine/hfconfig"
	"github.com/gotune/gotune/engine/model"
	"github.com/gotune/gotune/engine/runcard"
	"github.com/gotune/gotune/engine/textdata"
	"github.com/gotune/gotune/engine/train"
	"github.com/gotune/gotune/methods/peft"
)

// runcardFiles names the model card's files in the final message.
const runcardFiles = runcard.CardFile + " and " + runcard.SummaryFile

// exactMatchMaxNew is the most tokens generated per answer when a job
// scores exact match (gotune eval's --max-new-tokens default).
const exactMatchMaxNew = 64

// readConversations reads the records of an instruction or chat file.
var readConversations = textdata.ReadConversations

// trainCard gathers what a finished run knows for its model card
// (engine/runcard writes it).
type trainCard struct {
	o         *JobOptions
	hc        *hfconfig.Config
	m         model.Model
	be        engine.Backend
	ds        *data.Dataset
	res       *Result
	precision engine.Precision
	resumed   bool
}

func (c *trainCard) write() error {
	o := c.o
	card := &runcard.Card{
		BaseModel:      o.Model,
		Architecture:   c.hc.Arch,
		Method:         o.Method,
		TrainData:      o.Data.Describe(),
		TrainSequences: c.ds.Len(),
		TrainTokens:    c.ds.Tokens(),
		EvalData:       o.Data.Eval,
		TotalSteps:     c.res.TotalSteps,
		Device:         c.be.Name(),
		Host:           hostDescription(),
		Precision:      c.precision.String(),
		Finished:       time.Now().UTC().Format(time.RFC3339),
		Gotune:         gotuneVersion(),
		Output:         "full model (Hugging Face layout)",
	}
	card.Trainable, card.TotalParams = train.CountParams(c.m.Params())
	card.MethodSettings, card.Settings = map[string]string{}, map[string]string{}
	o.Record.Card(c.res.SeqLen, card)
	if c.res.Adapter {
		h, err := peft.ReadHeader(o.Out)
		if err != nil {
			return err
		}
		card.PeftType = h.PeftType
		card.Output = "adapter (PEFT layout, peft_type " + h.PeftType + ")"
	}
	hist := c.res.History
	if c.resumed {
		// The card describes the whole run, as metrics.jsonl holds it.
		all, err := train.ReadMetrics(filepath.Join(o.Out, train.MetricsFile))
		if err != nil {
			return err
		}
		hist = all
	}
	card.AddHistory(hist)
	switch {
	case c.res.Interrupted:
		card.Outcome = runcard.Interrupted
	case c.res.EarlyStopped:
		card.Outcome = runcard.EarlyStopped
	default:
		card.Outcome = runcard.Completed
	}
	if c.res.BestStep > 0 {
		loss := c.res.BestEvalLoss
		card.BestEvalLoss, card.BestEvalStep = &loss, c.res.BestStep
		if o.Train.KeepBest {
			card.BestDir = train.BestDir
		}
	}
	if em := c.res.ExactMatch; em != nil {
		acc := em.Accuracy()
		card.EvalExactMatch, card.EvalExactMatchOf = &acc, em.Total
	}
	if err := runcard.Write(o.Out, card); err != nil {
		return fmt.Errorf("writing the model card: %w", err)
	}
	return nil
}

// conversational reports whether ds has one right answer per record to
// score exact match on (instruction or chat data).
func conversational(ds *data.Dataset) bool {
	return ds != nil && textdata.IsConversational(ds.Format)
}

// optionsRecorder describes a run by its JobOptions (the Recorder of
// callers that have no names of their own).
type optionsRecorder struct{ o *JobOptions }

// methodSettings returns the options of the run's method, by name.
func (r optionsRecorder) methodSettings() string {
	o := r.o
	switch o.Method {
	case "lora":
		return fmt.Sprintf("%+v", o.LoRA)
	case "freeze":
		return fmt.Sprintf("%+v", o.Freeze)
	case "adapter":
		return fmt.Sprintf("%+v", o.Bottleneck)
	case "prompt", "ptuning":
		return fmt.Sprintf("%+v", o.Prompt)
	case "prefix":
		return fmt.Sprintf("%+v %+v", o.Prompt, o.Prefix)
	}
	return ""
}

// Settings records the method, its options and every setting that
// changes the trajectory.
func (r optionsRecorder) Settings(seqLen int) []train.Setting {
	o := r.o
	return []train.Setting{
		{Name: o.name("Method"), Value: o.Method},
		{Name: "method options", Value: r.methodSettings()},
		{Name: o.name("SeqLen"), Value: fmt.Sprint(seqLen)},
		{Name: o.name("BatchSize"), Value: fmt.Sprint(o.BatchSize)},
		{Name: o.name("Seed"), Value: fmt.Sprint(o.Seed)},
		{Name: o.name("Shuffle"), Value: fmt.Sprint(o.Shuffle)},
		{Name: o.name("Packing"), Value: fmt.Sprint(o.Packing), Absent: "false"},
		{Name: o.name("GradCheckpoint"), Value: fmt.Sprint(o.GradCheckpoint), Harmless: true},
	}
}

// Card lists the method's options and the batch settings.
func (r optionsRecorder) Card(seqLen int, c *runcard.Card) {
	o := r.o
	if s := r.methodSettings(); s != "" {
		c.MethodSettings[o.Method] = s
	}
	c.Settings["lr"] = fmt.Sprint(o.Train.LR)
	c.Settings["lr_schedule"] = fmt.Sprint(o.Train.Schedule)
	c.Settings["batch_size"] = fmt.Sprint(o.BatchSize)
	c.Settings["grad_accum"] = fmt.Sprint(o.Train.GradAccum)
	c.Settings["seq_len"] = fmt.Sprint(seqLen)
	c.Settings["seed"] = fmt.Sprint(o.Seed)
}

// Started does nothing.
func (optionsRecorder) Started(int) error { return nil }

// hostDescription names the machine: OS, architecture, CPU model (where
// the system says) and cores.
func hostDescription() string {
	cpu := ""
	if f, err := os.Open("/proc/cpuinfo"); err == nil {
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			if k, v, ok := strings.Cut(sc.Text(), ":"); ok && strings.TrimSpace(k) == "model name" {
				cpu = strings.TrimSpace(v) + ", "
				break
			}
		}
		f.Close()
	}
	return fmt.Sprintf("%s/%s, %s%d cores", runtime.GOOS, runtime.GOARCH, cpu, runtime.NumCPU())
}

// gotuneVersion is the module version and VCS revision the binary was
// built from, as far as the build recorded them.
func gotuneVersion() string {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return "unknown"
	}
	v := bi.Main.Version
	for _, s := range bi.Settings {
		if s.Key == "vcs.revision" && len(s.Value) >= 12 {
			v += " " + s.Value[:12]
		}
	}
	return v
}

// OnGPU reports whether be is the CUDA backend (what precision auto asks
// about).
func OnGPU(be engine.Backend) bool { return strings.HasPrefix(be.Name(), "cuda") }
