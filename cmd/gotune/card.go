package main

import (
	"bufio"
	"context"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"strings"
	"time"

	"github.com/gotune/gotune/engine"
	"github.com/gotune/gotune/engine/data"
	"github.com/gotune/gotune/engine/generate"
	"github.com/gotune/gotune/engine/hfconfig"
	"github.com/gotune/gotune/engine/model"
	"github.com/gotune/gotune/engine/runcard"
	"github.com/gotune/gotune/engine/textdata"
	"github.com/gotune/gotune/engine/train"
	"github.com/gotune/gotune/methods/peft"
)

// trainCard gathers what "gotune train" knows about a finished run for
// its model card (engine/runcard writes it).
type trainCard struct {
	f         *trainFlags
	fs        *flag.FlagSet
	args      []string // the command line after "gotune train"
	hc        *hfconfig.Config
	m         model.Model
	be        engine.Backend
	ds        *data.Dataset
	res       *train.Result
	total     int
	seqLen    int // the effective --seq-len
	precision engine.Precision
	own       map[string]bool // the method's flags
	skip      map[string]bool // other methods' flags
	adapter   bool
	resumed   bool
	// exactMatch is the evaluation's exact match (--eval-exact-match).
	exactMatch *generate.ExactMatchResult
}

// cardAlways are the settings a card lists even at their defaults.
var cardAlways = map[string]bool{
	"lr": true, "lr-schedule": true, "batch-size": true, "grad-accum": true,
	"seq-len": true, "seed": true, "weight-decay": true, "max-grad-norm": true,
}

// cardNever are settings the card shows elsewhere, or that do not
// describe the run.
var cardNever = map[string]bool{
	"model": true, "data": true, "eval-data": true, "out": true, "method": true,
	"config": true, "print-config": true,
}

func (c *trainCard) write() error {
	card := &runcard.Card{
		Command:        "gotune train " + shellJoin(c.args),
		BaseModel:      c.f.modelDir,
		Architecture:   c.hc.Arch,
		Method:         c.f.method,
		TrainData:      c.f.text.describe(c.f.dataPath),
		TrainSequences: c.ds.Len(),
		TrainTokens:    c.ds.Tokens(),
		EvalData:       c.f.text.evalData,
		TotalSteps:     c.total,
		Device:         c.be.Name(),
		Host:           hostDescription(),
		Precision:      c.precision.String(),
		Finished:       time.Now().UTC().Format(time.RFC3339),
		Gotune:         gotuneVersion(),
		Output:         "full model (Hugging Face layout)",
	}
	card.Trainable, card.TotalParams = train.CountParams(c.m.Params())
	card.MethodSettings, card.Settings = map[string]string{}, map[string]string{}
	c.fs.VisitAll(func(fl *flag.Flag) {
		v := fl.Value.String()
		if fl.Name == "seq-len" {
			v = fmt.Sprint(c.seqLen)
		}
		switch {
		case c.skip[fl.Name] || cardNever[fl.Name]:
		case c.own[fl.Name]:
			if v != "" {
				card.MethodSettings[fl.Name] = v
			}
		case cardAlways[fl.Name] || v != fl.DefValue:
			card.Settings[fl.Name] = v
		}
	})
	if c.adapter {
		h, err := peft.ReadHeader(c.f.out)
		if err != nil {
			return err
		}
		card.PeftType = h.PeftType
		card.Output = "adapter (PEFT layout, peft_type " + h.PeftType + ")"
	}
	hist := c.res.History
	if c.resumed {
		// The card describes the whole run, as metrics.jsonl holds it.
		all, err := train.ReadMetrics(filepath.Join(c.f.out, train.MetricsFile))
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
		if c.f.keepBest {
			card.BestDir = train.BestDir
		}
	}
	if em := c.exactMatch; em != nil {
		acc := em.Accuracy()
		card.EvalExactMatch, card.EvalExactMatchOf = &acc, em.Total
	}
	if err := runcard.Write(c.f.out, card); err != nil {
		return fmt.Errorf("writing the model card: %w", err)
	}
	return nil
}

// exactMatchMaxNew is the most tokens generated per answer when train
// scores exact match (gotune eval's --max-new-tokens default).
const exactMatchMaxNew = 64

// conversational reports whether ds has one right answer per record to
// score exact match on (instruction or chat data).
func conversational(ds *data.Dataset) bool {
	return ds != nil && textdata.IsConversational(ds.Format)
}

// trainExactMatch scores greedy exact match of the trained model on the
// first n records of the evaluation file.
func trainExactMatch(ctx context.Context, m model.Model, td *trainData, path string, n int) (*generate.ExactMatchResult, error) {
	convs, _, err := textdata.ReadConversations(path, td.eval.Format)
	if err != nil {
		return nil, fmt.Errorf("--eval-exact-match: %w", err)
	}
	convs = convs[:min(n, len(convs))]
	res, err := generate.ExactMatch(ctx, m, td.tok, td.tmpl, convs, exactMatchMaxNew, nil)
	if err != nil {
		return nil, fmt.Errorf("--eval-exact-match: %w", err)
	}
	return res, nil
}

// shellJoin quotes args for a POSIX shell where needed.
func shellJoin(args []string) string {
	out := make([]string, len(args))
	for i, a := range args {
		if a != "" && strings.Trim(a, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_=./:,+@%") == "" {
			out[i] = a
		} else {
			out[i] = "'" + strings.ReplaceAll(a, "'", `'\''`) + "'"
		}
	}
	return strings.Join(out, " ")
}

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
