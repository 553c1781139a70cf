// Greedy decoding with llama.cpp (node-llama-cpp's prebuilt CPU binaries),
// compared with gotune's: the check scripts/check-gguf-llamacpp.sh runs.
//
// usage: node gguf-greedy.mjs MODEL.gguf GOTUNE_JSON PROMPT_TEXT [--tolerant]
//        node gguf-greedy.mjs --probe   (exit 0 when llama.cpp loads here)
//
// GOTUNE_JSON is the line "gotune generate --temperature 0 --print-ids"
// printed for PROMPT_TEXT: {prompt_ids, ids, text}. This script
//   1. tokenizes PROMPT_TEXT with the GGUF file's tokenizer (special tokens
//      recognised, BOS added when the file's add_bos_token says so) and
//      compares the ids with gotune's prompt_ids;
//   2. feeds gotune's prompt_ids to llama.cpp and decodes greedily as many
//      tokens as gotune generated (stopping early at an end-of-generation
//      token, as gotune does), and compares the ids.
// It prints one line per check and exits 1 on any difference; with
// --tolerant (for quantized files, whose rounding may flip a close call)
// a continuation difference is reported but does not fail.
import { getLlama, LlamaLogLevel } from "node-llama-cpp";

const [modelPath, gotuneJSON, promptText, mode] = process.argv.slice(2);
if (modelPath === "--probe") {
  await (await getLlama({ gpu: false, build: "never", logLevel: LlamaLogLevel.error })).dispose();
  process.exit(0);
}
if (!modelPath || !gotuneJSON || promptText === undefined) {
  console.error("usage: node gguf-greedy.mjs MODEL.gguf GOTUNE_JSON PROMPT_TEXT [--tolerant]");
  process.exit(2);
}
const want = JSON.parse(gotuneJSON);
const llama = await getLlama({ gpu: false, build: "never", logLevel: LlamaLogLevel.error });
const model = await llama.loadModel({ modelPath, gpuLayers: 0 });

const tokenized = promptText === "" ? [] : [...model.tokenize(promptText, true)];
if (model.tokens.shouldPrependBosToken && model.tokens.bos !== null && tokenized[0] !== model.tokens.bos) {
  tokenized.unshift(model.tokens.bos);
}

const n = want.ids.length + 1; // one more, to see that llama.cpp stops too
const context = await model.createContext({ contextSize: Math.min(want.prompt_ids.length + n + 8, model.trainContextSize), threads: 1 });
const sequence = context.getSequence();
const ids = [];
for await (const token of sequence.evaluate(want.prompt_ids, { temperature: 0 })) {
  if (model.isEogToken(token)) break;
  ids.push(token);
  if (ids.length >= n || want.prompt_ids.length + ids.length >= model.trainContextSize) break;
}
const stopped = ids.length < n;
const got = stopped || ids.length <= want.ids.length ? ids : ids.slice(0, want.ids.length);
const text = model.detokenize(got);
await context.dispose();
await model.dispose();
await llama.dispose();

const same = (a, b) => a.length === b.length && a.every((x, i) => x === b[i]);
const prefix = (a, b) => { let i = 0; while (i < a.length && i < b.length && a[i] === b[i]) i++; return i; };
let failed = false;
const promptOK = same(tokenized, want.prompt_ids);
console.log(`  prompt tokens: ${promptOK ? "same" : "DIFFER"} (${tokenized.length} ids)` +
  (promptOK ? "" : `\n    llama.cpp ${JSON.stringify(tokenized)}\n    gotune    ${JSON.stringify(want.prompt_ids)}`));
failed ||= !promptOK;
const genOK = same(got, want.ids);
console.log(`  greedy continuation: ${genOK ? "same" : "DIFFER"} (${got.length} tokens, ${prefix(got, want.ids)} agree from the start)`);
console.log(`    llama.cpp ids ${JSON.stringify(got)} text ${JSON.stringify(text)}`);
console.log(`    gotune    ids ${JSON.stringify(want.ids)} text ${JSON.stringify(want.text)}`);
if (!genOK && mode !== "--tolerant") failed = true;
process.exit(failed ? 1 : 0);
