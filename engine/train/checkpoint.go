package train

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"github.com/gotune/gotune/engine/strictjson"
	"io"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"

	"github.com/gotune/gotune/engine/data"
	"github.com/gotune/gotune/engine/fsutil"
	"github.com/gotune/gotune/engine/safetensors"
)

// Checkpoints. With Config.SaveEvery > 0, Run writes OutDir/checkpoint-<step>/
// every SaveEvery optimizer steps (and when interrupted), holding
//
//	the Saver's files          the model (config.json, model.safetensors) or
//	                           the method's adapter folder, as at the end of a run
//	trainer_state.safetensors  the AdamW moments of every trainable parameter,
//	                           float32, named exp_avg.<param> and exp_avg_sq.<param>
//	trainer_state.json         TrainerState: step, data position, schedule,
//	                           the settings that must match to resume
//
// A checkpoint is assembled in a hidden folder OutDir/.checkpoint-<step>.tmp-*
// and renamed into place when complete, so a crash never leaves a
// half-written checkpoint-<step>; trainer_state.json is also written last,
// and a folder without it is refused as incomplete. Resume restores the
// optimizer from one; the caller loads the weights (they are the Saver's
// files, in whatever form the method loads them from).
const (
	// CheckpointPrefix starts the name of every checkpoint folder.
	CheckpointPrefix = "checkpoint-"
	// StateFile is the trainer state JSON, the last file of a checkpoint.
	StateFile = "trainer_state.json"
	// MomentsFile holds the AdamW moments.
	MomentsFile = "trainer_state.safetensors"

	stateFormat = 1
	tmpPrefix   = "." + CheckpointPrefix
)

// Setting is one named value of a run that a resumed run is checked
// against: a hyper-parameter, a data fingerprint. Name is what the user
// knows it by (a flag such as "--lr").
type Setting struct {
	Name  string `json:"name"`
	Value string `json:"value"`
	// Harmless marks a setting that may differ on resume without changing
	// the training trajectory (--log-every, --out): a difference is a
	// warning, not an error.
	Harmless bool `json:"harmless,omitempty"`
	// Absent, when not empty, is the value runs had before the setting
	// existed: a checkpoint that does not record the setting matches a
	// current value equal to it, so adding a setting does not strand the
	// checkpoints of older versions.
	Absent string `json:"-"`
	// Label, when not empty, is how messages name the setting (Name
	// stays the checkpoint's key, "--lr"): the trainer labels its own
	// settings through Options.Name, so a library caller reads "LR".
	Label string `json:"-"`
}

// ParamState names a trainable parameter of a checkpoint and its shape.
type ParamState struct {
	Name  string `json:"name"`
	Shape []int  `json:"shape"`
}

// TrainerState is trainer_state.json: everything besides the weights and
// the moments that a resumed run needs to take the next step exactly as
// the uninterrupted run would have.
type TrainerState struct {
	// Format is the layout version of the checkpoint (1).
	Format int `json:"format"`
	// Step is the number of optimizer steps done; the next is Step+1.
	Step int `json:"step"`
	// TotalSteps is the length of the run that wrote the checkpoint.
	TotalSteps int `json:"total_steps"`
	// MicroBatches is the number of micro-batches consumed; the loader
	// continues at batch MicroBatches mod BatchesPerEpoch of epoch
	// MicroBatches div BatchesPerEpoch (the shuffle of an epoch is a pure
	// function of the seed and the epoch, so this is the whole data state).
	MicroBatches    int `json:"micro_batches"`
	LoaderEpoch     int `json:"loader_epoch"`
	LoaderBatch     int `json:"loader_batch"`
	BatchesPerEpoch int `json:"batches_per_epoch"`
	// Epoch is the fractional epoch reached, as in metrics.jsonl.
	Epoch float64 `json:"epoch"`
	// LR is the learning rate step Step used; NextLR the one step Step+1
	// will use; ScheduleSteps the schedule's length.
	LR            float64 `json:"lr"`
	NextLR        float64 `json:"next_lr"`
	ScheduleSteps int     `json:"schedule_steps"`
	// ElapsedS is the training wall time up to this step, so elapsed_s in
	// metrics.jsonl keeps growing across a resume.
	ElapsedS float64 `json:"elapsed_s"`
	// ConfigHash is a SHA-256 of the settings that must match (for a quick
	// look; Resume compares Settings one by one to name differences).
	ConfigHash string    `json:"config_hash"`
	Settings   []Setting `json:"settings"`
	// Params lists the trainable parameters whose moments are stored.
	Params []ParamState `json:"params"`
	// RandState is the Saver's or model's random-number state (see
	// RandStater), when it has one.
	RandState []byte `json:"rand_state,omitempty"`
	// BestStep, BestEvalLoss and EvalsSinceBest are the lowest eval loss
	// so far and the evaluations since (Config.KeepBest and early
	// stopping continue from them); BestStep is 0 before any evaluation.
	BestStep       int      `json:"best_step,omitempty"`
	BestEvalLoss   *float64 `json:"best_eval_loss,omitempty"`
	EvalsSinceBest int      `json:"evals_since_best,omitempty"`
	// Files maps the path (relative, slash-separated) of every other file
	// of the checkpoint to its SHA-256, so flipped bytes or a truncated
	// file are found before resuming from them (VerifyCheckpoint).
	Files map[string]string `json:"files"`
	// StateSHA256 is the SHA-256 of this JSON document written with
	// StateSHA256 empty: damage to trainer_state.json itself is found too.
	StateSHA256 string `json:"state_sha256"`
}

// RandStater is implemented by a Saver or model that draws random numbers
// during training (dropout masks). A checkpoint stores the state and
// Resume restores it, so the resumed run draws what the uninterrupted run
// would have. Without it a resumed run restarts such streams.
type RandStater interface {
	// MarshalRandState returns the current state.
	MarshalRandState() ([]byte, error)
	// UnmarshalRandState restores a state MarshalRandState returned.
	UnmarshalRandState([]byte) error
}

// ResumeInfo describes a checkpoint Resume loaded.
type ResumeInfo struct {
	// Dir is the checkpoint folder.
	Dir string
	// State is its trainer_state.json.
	State *TrainerState
	// Warnings name harmless settings that differ from the checkpoint's,
	// and state that could not be restored.
	Warnings []string
}

// CheckpointDir returns the folder of the checkpoint after step under out.
func CheckpointDir(out string, step int) string {
	return filepath.Join(out, CheckpointPrefix+strconv.Itoa(step))
}

// checkpointStep parses a checkpoint folder name, "checkpoint-<step>".
func checkpointStep(name string) (int, bool) {
	s, ok := strings.CutPrefix(name, CheckpointPrefix)
	if !ok || s == "" || strings.TrimLeft(s, "0123456789") != "" {
		return 0, false
	}
	n, err := strconv.Atoi(s)
	return n, err == nil
}

// ReadState reads and checks dir/trainer_state.json. A missing file means
// the checkpoint is incomplete, and the error says so.
func ReadState(dir string) (*TrainerState, error) {
	path := filepath.Join(dir, StateFile)
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("checkpoint %s is incomplete: it has no %s (the run stopped while writing it); resume from an earlier checkpoint", dir, StateFile)
	}
	if err != nil {
		return nil, fmt.Errorf("checkpoint %s: %w", dir, err)
	}
	if err := strictjson.CheckKeys(b); err != nil {
		return nil, fmt.Errorf("checkpoint %s is damaged: %s: %w", dir, path, err)
	}
	var st TrainerState
	dec := json.NewDecoder(strings.NewReader(string(b)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&st); err != nil {
		return nil, fmt.Errorf("checkpoint %s is damaged: %s: %w", dir, path, err)
	}
	if err := st.checkSelfHash(); err != nil {
		return nil, fmt.Errorf("checkpoint %s is damaged: %s: %w", dir, path, err)
	}
	switch {
	case st.Format != stateFormat:
		return nil, fmt.Errorf("%s: checkpoint format %d, this gotune reads format %d", path, st.Format, stateFormat)
	case st.Step < 1 || st.MicroBatches < st.Step || st.BatchesPerEpoch < 1:
		return nil, fmt.Errorf("%s is damaged: step %d, %d micro-batches, %d batches per epoch", path, st.Step, st.MicroBatches, st.BatchesPerEpoch)
	case len(st.Params) == 0:
		return nil, fmt.Errorf("%s is damaged: it lists no trainable parameters", path)
	}
	if _, err := os.Stat(filepath.Join(dir, MomentsFile)); err != nil {
		return nil, fmt.Errorf("checkpoint %s is incomplete: %w", dir, err)
	}
	return &st, nil
}

// ErrNoCheckpoint is the cause FindCheckpoint gives for an output folder
// without checkpoints: its run saved none (Config.SaveEvery was 0).
var ErrNoCheckpoint = errors.New("the run saved no checkpoint")

// FindCheckpoint resolves the folder a run resumes from: a
// checkpoint-<step> folder (which must be complete), or an output folder,
// whose latest complete checkpoint it picks (ErrNoCheckpoint when it has
// none). skipped lists the newer incomplete checkpoints passed over.
func FindCheckpoint(dir string) (ckpt string, st *TrainerState, skipped []string, err error) {
	info, err := os.Stat(dir)
	if err != nil {
		return "", nil, nil, err
	}
	if !info.IsDir() {
		return "", nil, nil, fmt.Errorf("%s is not a folder", dir)
	}
	_, isCkpt := checkpointStep(filepath.Base(filepath.Clean(dir)))
	if _, err := os.Stat(filepath.Join(dir, StateFile)); err == nil || isCkpt {
		st, err := readVerified(dir)
		if err != nil {
			return "", nil, nil, err
		}
		return dir, st, nil, nil
	}
	steps, err := listCheckpoints(dir)
	if err != nil {
		return "", nil, nil, err
	}
	if len(steps) == 0 {
		return "", nil, nil, fmt.Errorf("%s holds no %s<step> folder: %w", dir, CheckpointPrefix, ErrNoCheckpoint)
	}
	for i := len(steps) - 1; i >= 0; i-- {
		c := CheckpointDir(dir, steps[i])
		st, err := readVerified(c)
		if err == nil {
			return c, st, skipped, nil
		}
		skipped = append(skipped, fmt.Sprintf("%s (%v)", c, err))
	}
	return "", nil, skipped, fmt.Errorf("%s has no complete checkpoint: %s", dir, strings.Join(skipped, "; "))
}

// readVerified reads dir's state and checks every file against its
// checksum.
func readVerified(dir string) (*TrainerState, error) {
	st, err := ReadState(dir)
	if err != nil {
		return nil, err
	}
	if err := VerifyCheckpoint(dir, st); err != nil {
		return nil, err
	}
	return st, nil
}

// VerifyCheckpoint checks that dir holds exactly the files st lists, each
// with its recorded SHA-256: a checkpoint with a damaged, missing or
// extra file is not resumed from.
func VerifyCheckpoint(dir string, st *TrainerState) error {
	if len(st.Files) == 0 {
		return fmt.Errorf("checkpoint %s is damaged: %s lists no checksums", dir, StateFile)
	}
	got, err := hashFiles(dir)
	if err != nil {
		return fmt.Errorf("checkpoint %s: %w", dir, err)
	}
	for _, name := range slices.Sorted(maps.Keys(st.Files)) {
		sum, ok := got[name]
		switch {
		case !ok:
			return fmt.Errorf("checkpoint %s is damaged: %s is missing", dir, name)
		case sum != st.Files[name]:
			return fmt.Errorf("checkpoint %s is damaged: %s does not match its checksum (sha256 %s, recorded %s)", dir, name, sum, st.Files[name])
		}
	}
	for _, name := range slices.Sorted(maps.Keys(got)) {
		if _, ok := st.Files[name]; !ok {
			return fmt.Errorf("checkpoint %s: %s is not one of the files the checkpoint recorded", dir, name)
		}
	}
	return nil
}

// hashFiles returns the SHA-256 of every regular file under dir except
// trainer_state.json, by slash-separated relative path.
func hashFiles(dir string) (map[string]string, error) {
	out := map[string]string{}
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, err := filepath.Rel(dir, path)
		if err != nil {
			return err
		}
		rel = filepath.ToSlash(rel)
		if rel == StateFile {
			return nil
		}
		if !d.Type().IsRegular() {
			return fmt.Errorf("%s is not a regular file", rel)
		}
		sum, err := fileSHA256(path)
		if err != nil {
			return err
		}
		out[rel] = sum
		return nil
	})
	return out, err
}

func fileSHA256(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// selfHash is the SHA-256 of st's JSON with StateSHA256 empty.
func (st *TrainerState) selfHash() (string, error) {
	c := *st
	c.StateSHA256 = ""
	b, err := json.Marshal(&c)
	if err != nil {
		return "", err
	}
	h := sha256.Sum256(b)
	return hex.EncodeToString(h[:]), nil
}

func (st *TrainerState) checkSelfHash() error {
	if st.StateSHA256 == "" {
		return errors.New("no state_sha256")
	}
	sum, err := st.selfHash()
	if err != nil {
		return err
	}
	if sum != st.StateSHA256 {
		return fmt.Errorf("its contents do not match state_sha256 (edited or damaged)")
	}
	return nil
}

// listCheckpoints returns the steps of the checkpoint-<step> folders in
// out, ascending.
func listCheckpoints(out string) ([]int, error) {
	entries, err := os.ReadDir(out)
	if err != nil {
		return nil, err
	}
	var steps []int
	for _, e := range entries {
		if n, ok := checkpointStep(e.Name()); ok && e.IsDir() {
			steps = append(steps, n)
		}
	}
	sort.Ints(steps)
	return steps, nil
}

// settings returns the trainer's own settings that a resume must match,
// followed by the caller's Config.Settings (a caller setting with a name
// the trainer already has is dropped: the trainer's formatting wins).
func (t *Trainer) settings() []Setting {
	f := func(v float64) string { return strconv.FormatFloat(v, 'g', -1, 64) }
	n := t.opts.name
	own := []Setting{
		{Name: "--lr", Label: n("LR"), Value: f(t.cfg.LR)},
		{Name: "--lr-schedule", Label: n("Schedule"), Value: string(t.cfg.Schedule)},
		{Name: "--warmup-steps", Label: n("WarmupSteps"), Value: strconv.Itoa(t.cfg.WarmupSteps)},
		// A constant schedule's multipliers do not depend on its length,
		// so a longer run only trains longer.
		{Name: "schedule length (--steps or --epochs)", Label: "schedule length (" + n("Steps") + " or " + n("Epochs") + ")", Value: strconv.Itoa(t.scheduleSteps()), Harmless: t.cfg.Schedule == Constant},
		{Name: "--weight-decay", Label: n("WeightDecay"), Value: f(t.cfg.WeightDecay)},
		{Name: "--adam-beta1", Label: n("Beta1"), Value: f(t.cfg.Beta1)},
		{Name: "--adam-beta2", Label: n("Beta2"), Value: f(t.cfg.Beta2)},
		{Name: "--adam-eps", Label: n("Eps"), Value: f(t.cfg.Eps)},
		{Name: "--max-grad-norm", Label: n("MaxGradNorm"), Value: f(t.cfg.MaxGradNorm)},
		{Name: "--grad-accum", Label: n("GradAccum"), Value: strconv.Itoa(t.cfg.GradAccum)},
		// The resolved policy (auto is bf16 on a GPU only): another one
		// changes every rounding of the trajectory.
		{Name: "--precision", Label: n("Precision"), Value: t.cfg.Precision.String()},
		{Name: "batches per epoch", Value: strconv.Itoa(t.loader.BatchesPerEpoch())},
		{Name: "--log-every", Label: n("LogEvery"), Value: strconv.Itoa(t.cfg.LogEvery), Harmless: true},
		{Name: "--eval-every", Label: n("EvalEvery"), Value: strconv.Itoa(t.cfg.EvalEvery), Harmless: true},
		{Name: "--save-every", Label: n("SaveEvery"), Value: strconv.Itoa(t.cfg.SaveEvery), Harmless: true},
		{Name: "--save-total-limit", Label: n("SaveTotalLimit"), Value: strconv.Itoa(t.cfg.SaveTotalLimit), Harmless: true},
	}
	seen := map[string]bool{}
	for _, s := range own {
		seen[s.Name] = true
	}
	for _, s := range t.cfg.Settings {
		if !seen[s.Name] {
			seen[s.Name] = true
			own = append(own, s)
		}
	}
	return own
}

// configHash hashes the settings that must match, independent of order.
func configHash(ss []Setting) string {
	var lines []string
	for _, s := range ss {
		if !s.Harmless {
			lines = append(lines, s.Name+"="+s.Value)
		}
	}
	sort.Strings(lines)
	h := sha256.Sum256([]byte(strings.Join(lines, "\n")))
	return hex.EncodeToString(h[:])
}

// compareSettings returns the differences between the checkpoint's
// settings and the current ones: those that change the trajectory (an
// error) and harmless ones (warnings).
// Messages name a setting by its current Label, if any.
func compareSettings(ckpt, cur []Setting) (bad, harmless []string) {
	type entry struct {
		value    string
		harmless bool
	}
	old := map[string]entry{}
	for _, s := range ckpt {
		old[s.Name] = entry{s.Value, s.Harmless}
	}
	now := map[string]entry{}
	shown := map[string]string{} // how messages name a setting
	for _, s := range cur {
		if s.Label != "" {
			shown[s.Name] = s.Label
		}
		now[s.Name] = entry{s.Value, s.Harmless}
		if _, recorded := old[s.Name]; !recorded && s.Absent != "" {
			old[s.Name] = entry{s.Absent, s.Harmless}
		}
	}
	names := map[string]bool{}
	for n := range old {
		names[n] = true
	}
	for n := range now {
		names[n] = true
	}
	for _, n := range slices.Sorted(maps.Keys(names)) {
		o, inOld := old[n]
		c, inNow := now[n]
		if inOld && inNow && o.value == c.value {
			continue
		}
		show := func(e entry, ok bool) string {
			if !ok {
				return "(not recorded)"
			}
			return e.value
		}
		label := n
		if l, ok := shown[n]; ok {
			label = l
		}
		msg := fmt.Sprintf("%s is %s here but %s in the checkpoint", label, show(c, inNow), show(o, inOld))
		// Harmless only when every side that knows the setting says so.
		if (!inOld || o.harmless) && (!inNow || c.harmless) {
			harmless = append(harmless, msg)
		} else {
			bad = append(bad, msg)
		}
	}
	return bad, harmless
}

// scheduleSteps is the schedule's length in optimizer steps.
func (t *Trainer) scheduleSteps() int {
	if t.cfg.ScheduleSteps > 0 {
		return t.cfg.ScheduleSteps
	}
	return t.total
}

// randStater returns the Saver or model that keeps random state, if any.
func (t *Trainer) randStater() RandStater {
	if r, ok := t.opts.Saver.(RandStater); ok {
		return r
	}
	if r, ok := t.model.(RandStater); ok {
		return r
	}
	return nil
}

func momentNames(param string) (m, v string) { return "exp_avg." + param, "exp_avg_sq." + param }

// writeCheckpoint writes the checkpoint of the current step under OutDir
// (see the layout above) and then applies SaveTotalLimit.
func (t *Trainer) writeCheckpoint(elapsedS float64, lastLR float64) (string, error) {
	out := t.cfg.OutDir
	final := CheckpointDir(out, t.step)
	t.removeStaleTemps()
	tmp, err := os.MkdirTemp(out, tmpPrefix+strconv.Itoa(t.step)+".tmp-")
	if err != nil {
		return "", fmt.Errorf("checkpoint at step %d: %w", t.step, err)
	}
	ok := false
	defer func() {
		if !ok {
			os.RemoveAll(tmp)
		}
	}()
	saver := t.opts.CheckpointSaver
	if saver == nil {
		saver = t.opts.Saver
	}
	if err := saver.Save(tmp); err != nil {
		return "", fmt.Errorf("checkpoint at step %d: saving the weights: %w", t.step, err)
	}
	st := &TrainerState{
		Format: stateFormat, Step: t.step, TotalSteps: t.total, MicroBatches: t.micro,
		BatchesPerEpoch: t.loader.BatchesPerEpoch(),
		Epoch:           float64(t.micro) / float64(t.loader.BatchesPerEpoch()),
		LR:              lastLR, ScheduleSteps: t.scheduleSteps(), ElapsedS: elapsedS,
		Settings: t.settings(),
	}
	st.LoaderEpoch, st.LoaderBatch = t.micro/st.BatchesPerEpoch, t.micro%st.BatchesPerEpoch
	if t.step < t.total {
		st.NextLR = t.LR(t.step + 1)
	}
	st.ConfigHash = configHash(st.Settings)
	if t.best.step > 0 {
		loss := t.best.loss
		st.BestStep, st.BestEvalLoss, st.EvalsSinceBest = t.best.step, &loss, t.best.since
	}
	tensors := make([]safetensors.Tensor, 0, 2*len(t.params))
	for i, p := range t.params {
		st.Params = append(st.Params, ParamState{Name: p.Name, Shape: slices.Clone(p.W.Shape())})
		mn, vn := momentNames(p.Name)
		m, v := t.momentsHost(i)
		tensors = append(tensors,
			safetensors.Tensor{Name: mn, DType: safetensors.F32, Shape: slices.Clone(p.W.Shape()), F32: m},
			safetensors.Tensor{Name: vn, DType: safetensors.F32, Shape: slices.Clone(p.W.Shape()), F32: v})
	}
	if r := t.randStater(); r != nil {
		if st.RandState, err = r.MarshalRandState(); err != nil {
			return "", fmt.Errorf("checkpoint at step %d: random state: %w", t.step, err)
		}
	}
	if err := safetensors.Write(filepath.Join(tmp, MomentsFile), tensors, map[string]string{"format": "gotune-adamw"}); err != nil {
		return "", fmt.Errorf("checkpoint at step %d: %w", t.step, err)
	}
	if st.Files, err = hashFiles(tmp); err != nil {
		return "", fmt.Errorf("checkpoint at step %d: checksums: %w", t.step, err)
	}
	if st.StateSHA256, err = st.selfHash(); err != nil {
		return "", fmt.Errorf("checkpoint at step %d: %w", t.step, err)
	}
	// Last: its presence marks the checkpoint complete.
	if err := fsutil.WriteJSONAtomic(filepath.Join(tmp, StateFile), st); err != nil {
		return "", fmt.Errorf("checkpoint at step %d: %w", t.step, err)
	}
	// A checkpoint of this step may exist (a resumed run redoing steps
	// after an earlier, possibly incomplete, checkpoint): move it aside
	// so the complete new one replaces it in one rename.
	var old string
	if _, err := os.Lstat(final); err == nil {
		old = tmp + ".old"
		if err := os.Rename(final, old); err != nil {
			return "", fmt.Errorf("checkpoint at step %d: replacing %s: %w", t.step, final, err)
		}
	}
	if err := os.Rename(tmp, final); err != nil {
		return "", fmt.Errorf("checkpoint at step %d: %w", t.step, err)
	}
	ok = true
	syncDir(out)
	if old != "" {
		if err := os.RemoveAll(old); err != nil {
			return final, fmt.Errorf("checkpoint at step %d: removing the previous %s: %w", t.step, final, err)
		}
	}
	return final, t.pruneCheckpoints()
}

// syncDir makes renames in dir durable; file systems that cannot sync a
// folder only lose that guarantee.
func syncDir(dir string) {
	if d, err := os.Open(dir); err == nil {
		d.Sync()
		d.Close()
	}
}

// removeStaleTemps deletes what a crashed or killed run left half
// written in OutDir: checkpoint folders being assembled and the temporary
// files of atomic writes (fsutil.IsTemp names).
func (t *Trainer) removeStaleTemps() {
	fsutil.RemoveTemps(t.cfg.OutDir)
}

// pruneCheckpoints keeps the newest SaveTotalLimit complete checkpoints.
func (t *Trainer) pruneCheckpoints() error {
	if t.cfg.SaveTotalLimit <= 0 {
		return nil
	}
	steps, err := listCheckpoints(t.cfg.OutDir)
	if err != nil {
		return fmt.Errorf("%s: %w", t.opts.name("SaveTotalLimit"), err)
	}
	var complete []int
	for _, s := range steps {
		if _, err := os.Stat(filepath.Join(CheckpointDir(t.cfg.OutDir, s), StateFile)); err == nil {
			complete = append(complete, s)
		}
	}
	for len(complete) > t.cfg.SaveTotalLimit {
		dir := CheckpointDir(t.cfg.OutDir, complete[0])
		if err := os.RemoveAll(dir); err != nil {
			return fmt.Errorf("%s: removing %s: %w", t.opts.name("SaveTotalLimit"), dir, err)
		}
		complete = complete[1:]
	}
	return nil
}

// Resume continues a run from the checkpoint in dir: it checks that the
// run's settings and trainable parameters match the checkpoint's, loads
// the AdamW moments, the step counter and the data position, and
// restores the random state. The weights are not touched: the caller
// loads them from dir before (the model from its files for a full
// fine-tune, the adapter through the method for an adapter). Call it once,
// before Run; Run then appends to metrics.jsonl from the next step.
func (t *Trainer) Resume(dir string) (*ResumeInfo, error) {
	st, err := readVerified(dir)
	if err != nil {
		return nil, err
	}
	return t.ResumeVerified(dir, st)
}

// ResumeVerified is Resume from the state FindCheckpoint returned for
// dir, which it has already checked against every file's checksum: a
// full model's checkpoint holds gigabytes, so it is hashed once.
func (t *Trainer) ResumeVerified(dir string, st *TrainerState) (*ResumeInfo, error) {
	if t.step != 0 {
		return nil, fmt.Errorf("resume from %s: the trainer has already taken %d steps", dir, t.step)
	}
	info := &ResumeInfo{Dir: dir, State: st}
	bad, harmless := compareSettings(st.Settings, t.settings())
	if len(bad) > 0 {
		return nil, fmt.Errorf("resume from %s: this run's settings differ from the checkpoint's in ways that change the training trajectory: %s (the checkpoint's settings are in %s)",
			dir, strings.Join(bad, "; "), filepath.Join(dir, StateFile))
	}
	info.Warnings = append(info.Warnings, harmless...)
	if st.Step > t.total {
		return nil, fmt.Errorf("resume from %s: the checkpoint is at step %d but this run has only %d steps", dir, st.Step, t.total)
	}
	if t.microLimit > 0 && st.MicroBatches > t.microLimit {
		return nil, fmt.Errorf("resume from %s: the checkpoint consumed %d micro-batches but this run has only %d", dir, st.MicroBatches, t.microLimit)
	}
	if err := t.loadMoments(dir, st); err != nil {
		return nil, err
	}
	r := t.randStater()
	switch {
	case r != nil && st.RandState != nil:
		if err := r.UnmarshalRandState(st.RandState); err != nil {
			return nil, fmt.Errorf("resume from %s: random state: %w", dir, err)
		}
	case r != nil:
		info.Warnings = append(info.Warnings, "the checkpoint has no random state; random streams (dropout) restart")
	case st.RandState != nil:
		info.Warnings = append(info.Warnings, "the checkpoint has a random state this method cannot restore; random streams (dropout) restart")
	}
	t.step, t.micro = st.Step, st.MicroBatches
	if st.BestStep > 0 && st.BestEvalLoss != nil {
		t.best = bestTracker{loss: *st.BestEvalLoss, step: st.BestStep, since: st.EvalsSinceBest}
	}
	bpe := t.loader.BatchesPerEpoch()
	t.loader.Seek(t.micro/bpe, t.micro%bpe)
	t.elapsedBase = st.ElapsedS
	return info, nil
}

// loadMoments checks that the checkpoint's trainable parameters are this
// run's and uploads their moments.
func (t *Trainer) loadMoments(dir string, st *TrainerState) error {
	want := map[string][]int{}
	for _, p := range st.Params {
		want[p.Name] = p.Shape
	}
	var missing, shape []string
	for _, p := range t.params {
		s, ok := want[p.Name]
		switch {
		case !ok:
			missing = append(missing, p.Name)
		case !slices.Equal(s, p.W.Shape()):
			shape = append(shape, fmt.Sprintf("%s %v (checkpoint: %v)", p.Name, p.W.Shape(), s))
		}
		delete(want, p.Name)
	}
	var extra []string
	for n := range want {
		extra = append(extra, n)
	}
	sort.Strings(extra)
	var problems []string
	if len(missing) > 0 {
		problems = append(problems, "trainable here but not in the checkpoint: "+strings.Join(missing, ", "))
	}
	if len(extra) > 0 {
		problems = append(problems, "trainable in the checkpoint but not here: "+strings.Join(extra, ", "))
	}
	if len(shape) > 0 {
		problems = append(problems, "different shapes: "+strings.Join(shape, ", "))
	}
	if len(problems) > 0 {
		return fmt.Errorf("resume from %s: the trainable parameters differ (%s); resume with the same method and method settings", dir, strings.Join(problems, "; "))
	}
	path := filepath.Join(dir, MomentsFile)
	f, err := safetensors.Open(path)
	if err != nil {
		return fmt.Errorf("resume from %s: %w", dir, err)
	}
	defer f.Close()
	full := make([][2][]float32, len(t.params)) // ZeRO: every rank takes its shard
	for i, p := range t.params {
		for j, name := range []string{"exp_avg." + p.Name, "exp_avg_sq." + p.Name} {
			vals, sh, err := f.Float32(name)
			if err != nil {
				return fmt.Errorf("resume from %s: %w", path, err)
			}
			if !slices.Equal(sh, p.W.Shape()) {
				return fmt.Errorf("resume from %s: %s has shape %v, the parameter %v", path, name, sh, p.W.Shape())
			}
			if t.m == nil {
				full[i][j] = vals
				continue
			}
			dst := t.m[i]
			if j == 1 {
				dst = t.v[i]
			}
			t.be.Upload(dst, vals)
		}
	}
	if t.m == nil {
		t.dp.loadMoments(t, full)
	}
	if err := t.be.Synchronize(); err != nil {
		return fmt.Errorf("resume from %s: backend: %w", dir, err)
	}
	return nil
}

// DataFingerprint hashes the token ids and labels of every example of ds
// in order: equal fingerprints mean the same training data after
// tokenization (whatever file, format, template or tokenizer produced it).
func DataFingerprint(ds *data.Dataset) string {
	h := sha256.New()
	var buf []byte
	put := func(xs []int32) {
		buf = binary.LittleEndian.AppendUint64(buf[:0], uint64(len(xs)))
		for _, x := range xs {
			buf = binary.LittleEndian.AppendUint32(buf, uint32(x))
		}
		h.Write(buf)
	}
	for _, e := range ds.Examples {
		put(e.InputIDs)
		put(e.Labels)
	}
	return fmt.Sprintf("sha256:%x (%d examples)", h.Sum(nil), len(ds.Examples))
}
