package textdata

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/gotune/gotune/engine/data"
	"github.com/gotune/gotune/engine/strictjson"
)

// RegistryFile is the name of LLaMA-Factory's dataset registry in a
// dataset folder.
const RegistryFile = "dataset_info.json"

// RegistryEntry is one dataset of a dataset_info.json: where its records
// are and how to read them.
type RegistryEntry struct {
	// Name is the entry's key.
	Name string
	// Files are the data files: file_name, or every data file of the
	// folder it names, in name order.
	Files []string
	// Schema maps the records' columns.
	Schema Schema
	// NumSamples keeps only the first n records (0: all).
	NumSamples int
	// listsColumns is set when the entry has "columns": every column it
	// names must exist (else only the required ones must).
	listsColumns bool
}

// entryFields are the keys an entry may have, as LLaMA-Factory's
// parser.py (DatasetAttr) reads them.
var entryFields = []string{"file_name", "formatting", "ranking", "subset", "split", "folder", "num_samples", "columns", "tags",
	"hf_hub_url", "ms_hub_url", "om_hub_url", "script_url", "cloud_file_name", "revision"}

// columnNames and tagNames are the keys of an entry's "columns" and
// "tags"; unsupported columns are those gotune cannot train on yet.
var (
	columnNames        = []string{"prompt", "query", "response", "history", "messages", "system", "tools", "images", "videos", "audios", "chosen", "rejected", "kto_tag"}
	unsupportedColumns = map[string]string{"images": "multimodal", "videos": "multimodal", "audios": "multimodal", "chosen": "preference (ranking)", "rejected": "preference (ranking)", "kto_tag": "KTO"}
	tagNames           = []string{"role_tag", "content_tag", "user_tag", "assistant_tag", "observation_tag", "function_tag", "system_tag"}
)

// ReadRegistry reads the entries names of dir/dataset_info.json. Entry
// semantics follow LLaMA-Factory (src/llamafactory/data/parser.py): the
// formatting defaults to alpaca; without "columns" the default columns
// apply (instruction, input, output; conversations), but an entry that
// has "columns" uses only the columns it lists, and likewise for "tags"
// (from, value, human, gpt, observation, function_call, system). Hub
// entries without a local file_name, ranking and multimodal datasets are
// errors naming the entry.
func ReadRegistry(dir string, names []string) ([]RegistryEntry, error) {
	path := filepath.Join(dir, RegistryFile)
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("dataset registry: %w", err)
	}
	if err := strictjson.CheckKeys(raw); err != nil {
		return nil, fmt.Errorf("%s: %v", path, err)
	}
	var all map[string]json.RawMessage
	if err := json.Unmarshal(raw, &all); err != nil {
		return nil, fmt.Errorf("%s: not a JSON object of datasets: %v", path, err)
	}
	var out []RegistryEntry
	for _, name := range names {
		e, ok := all[name]
		if !ok {
			return nil, fmt.Errorf("%s: no dataset %q (it has %s)", path, name, keyList(all))
		}
		entry, err := parseEntry(dir, name, e)
		if err != nil {
			return nil, fmt.Errorf("%s: dataset %q: %v", path, name, err)
		}
		out = append(out, entry)
	}
	return out, nil
}

// rawEntry is an entry as written.
type rawEntry struct {
	FileName   string            `json:"file_name"`
	Formatting string            `json:"formatting"`
	Ranking    bool              `json:"ranking"`
	Split      string            `json:"split"`
	NumSamples int               `json:"num_samples"`
	Columns    map[string]string `json:"columns"`
	Tags       map[string]string `json:"tags"`
	HubURL     string            `json:"hf_hub_url"`
}

func parseEntry(dir, name string, raw json.RawMessage) (RegistryEntry, error) {
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(raw, &fields); err != nil {
		return RegistryEntry{}, fmt.Errorf("not an object: %v", err)
	}
	if err := unknownKeys(fields, entryFields, "key"); err != nil {
		return RegistryEntry{}, err
	}
	var re rawEntry
	dec := json.NewDecoder(bytes.NewReader(raw))
	if err := dec.Decode(&re); err != nil {
		return RegistryEntry{}, err
	}
	switch {
	case re.FileName == "":
		return RegistryEntry{}, fmt.Errorf("no \"file_name\": gotune reads local files only (download the dataset and name it in file_name)")
	case re.Ranking:
		return RegistryEntry{}, fmt.Errorf("preference (ranking) datasets are not supported yet")
	case re.Split != "" && re.Split != "train":
		return RegistryEntry{}, fmt.Errorf("split %q: a local file has only the train split", re.Split)
	case re.NumSamples < 0:
		return RegistryEntry{}, fmt.Errorf("num_samples must not be negative, got %d", re.NumSamples)
	}
	s, err := entrySchema(re, fields)
	if err != nil {
		return RegistryEntry{}, err
	}
	files, err := entryFiles(filepath.Join(dir, re.FileName))
	if err != nil {
		return RegistryEntry{}, err
	}
	_, lists := fields["columns"]
	return RegistryEntry{Name: name, Files: files, Schema: s, NumSamples: re.NumSamples, listsColumns: lists}, nil
}

// entrySchema applies an entry's formatting, columns and tags to the
// defaults.
func entrySchema(re rawEntry, fields map[string]json.RawMessage) (Schema, error) {
	var s Schema
	switch re.Formatting {
	case "", Alpaca:
		s = Schema{Formatting: Alpaca, Prompt: "instruction", Query: "input", Response: "output"}
	case ShareGPT:
		s = shareGPTSchema
		s.System, s.Tools = "", ""
	default:
		return s, fmt.Errorf("formatting %q (want %q or %q)", re.Formatting, Alpaca, ShareGPT)
	}
	if _, ok := fields["columns"]; ok {
		if err := unknownKeys(re.Columns, columnNames, "column"); err != nil {
			return s, err
		}
		for col, kind := range unsupportedColumns {
			if re.Columns[col] != "" {
				return s, fmt.Errorf("column %q: %s datasets are not supported yet", col, kind)
			}
		}
		c := re.Columns
		s.Prompt, s.Query, s.Response, s.History = c["prompt"], c["query"], c["response"], c["history"]
		s.Messages, s.System, s.Tools = c["messages"], c["system"], c["tools"]
	}
	if _, ok := fields["tags"]; ok {
		if err := unknownKeys(re.Tags, tagNames, "tag"); err != nil {
			return s, err
		}
		t := re.Tags
		s.RoleTag, s.ContentTag, s.UserTag, s.AssistantTag = t["role_tag"], t["content_tag"], t["user_tag"], t["assistant_tag"]
		s.ObservationTag, s.FunctionTag, s.SystemTag = t["observation_tag"], t["function_tag"], t["system_tag"]
	}
	switch {
	case s.Formatting == Alpaca && (s.Prompt == "" || s.Response == ""):
		return s, fmt.Errorf(`alpaca needs the "prompt" and "response" columns (gotune trains on replies)`)
	case s.Formatting == ShareGPT && (s.Messages == "" || s.RoleTag == "" || s.ContentTag == "" || s.UserTag == "" || s.AssistantTag == ""):
		return s, fmt.Errorf(`sharegpt needs the "messages" column and the role_tag, content_tag, user_tag and assistant_tag tags`)
	}
	return s, nil
}

// dataExts are the file types a registry entry may name (LLaMA-Factory
// also reads csv, arrow and txt).
var dataExts = []string{".json", ".jsonl", ".parquet"}

// entryFiles returns path, or the data files of the folder path.
func entryFiles(path string) ([]string, error) {
	st, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("file_name: %w", err)
	}
	if !st.IsDir() {
		if !hasDataExt(path) {
			return nil, fmt.Errorf("file_name %s: gotune reads %s files", path, strings.Join(dataExts, ", "))
		}
		return []string{path}, nil
	}
	ents, err := os.ReadDir(path)
	if err != nil {
		return nil, fmt.Errorf("file_name: %w", err)
	}
	var files []string
	for _, e := range ents {
		if !e.IsDir() && hasDataExt(e.Name()) {
			files = append(files, filepath.Join(path, e.Name()))
		}
	}
	if len(files) == 0 {
		return nil, fmt.Errorf("file_name %s: the folder holds no %s files", path, strings.Join(dataExts, ", "))
	}
	return files, nil
}

func hasDataExt(name string) bool {
	ext := strings.ToLower(filepath.Ext(name))
	for _, e := range dataExts {
		if ext == e {
			return true
		}
	}
	return false
}

// unknownKeys names the keys of m not in allowed.
func unknownKeys[V any](m map[string]V, allowed []string, noun string) error {
	var bad []string
	for k := range m {
		known := false
		for _, a := range allowed {
			known = known || k == a
		}
		if !known {
			bad = append(bad, fmt.Sprintf("%q", k))
		}
	}
	if len(bad) == 0 {
		return nil
	}
	sort.Strings(bad)
	return fmt.Errorf("unknown %s %s (known: %s)", noun, strings.Join(bad, ", "), strings.Join(allowed, ", "))
}

func keyList[V any](m map[string]V) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, fmt.Sprintf("%q", k))
	}
	sort.Strings(keys)
	return strings.Join(keys, ", ")
}

// OpenRegistry reads the datasets names of dir's dataset_info.json,
// tokenized like Open's instruction and chat data and concatenated in
// the order given (LLaMA-Factory's default mix). A column the entry names
// that no record of a file has is an error naming the file, the column
// and the entry.
func OpenRegistry(dir string, names []string, opts Options) (*data.Dataset, error) {
	entries, err := ReadRegistry(dir, names)
	if err != nil {
		return nil, err
	}
	tmpl, err := conversationTemplate(filepath.Join(dir, RegistryFile), opts)
	if err != nil {
		return nil, err
	}
	ds := &data.Dataset{Name: filepath.Join(dir, RegistryFile) + " [" + strings.Join(names, ",") + "]", Format: Instruction}
	for _, e := range entries {
		if e.Schema.Formatting == ShareGPT {
			ds.Format = ShareGPTFormat
		}
		for _, f := range e.Files {
			err := readEntryFile(f, e, func(c Conversation) error {
				return appendConversation(ds, c, tmpl, opts)
			})
			if err != nil {
				return nil, err
			}
		}
	}
	return ds, nil
}

// readEntryFile converts the records of one file of entry e, after
// checking that every column the schema names occurs in the file.
func readEntryFile(path string, e RegistryEntry, fn func(Conversation) error) error {
	var recs []data.Record
	seen := map[string]bool{}
	err := data.ReadRecords(path, func(r data.Record) error {
		if e.NumSamples > 0 && len(recs) == e.NumSamples {
			return nil
		}
		for k := range r.Fields {
			seen[k] = true
		}
		recs = append(recs, r)
		return nil
	})
	if err != nil {
		return err
	}
	if len(recs) == 0 {
		return data.Errorf(data.Loc{File: path}, "no examples (the file is empty)")
	}
	for _, c := range e.Schema.columns() {
		required := c[0] == "prompt" || c[0] == "response" || c[0] == "messages"
		if !seen[c[1]] && (required || e.listsColumns) {
			return data.Errorf(data.Loc{File: path}, "column %q (dataset_info.json %q: columns.%s) does not exist; the records have %s", c[1], e.Name, c[0], keyList(seen))
		}
	}
	for _, r := range recs {
		c, err := e.Schema.Conversation(r)
		if err != nil {
			return err
		}
		if err := fn(c); err != nil {
			return err
		}
	}
	return nil
}
