// Greedy decoding with llama.cpp (node-llama-cpp's prebuilt CPU binaries),
// compared with gotune's: the check scripts/check-gguf-llamacpp.sh runs.
//
// usage: node gguf-greedy.mjs MODEL.gguf GOTUNE_JSON PROMPT_TEXT [--tolerant] [--probs FILE [--max-prob-diff D]]
//        node gguf-greedy.mjs --probe   (exit 0 when llama.cpp loads here)
//
// GOTUNE_JSON is the line "gotune generate --temperature 0 --print-ids"
// printed for PROMPT_TEXT: {prompt_ids, ids, text}. This script
//   1. tokenizes PROMPT_TEXT with the GGUF file's tokenizer (special tokens
//      recognised, BOS added when the file's add_bos_token says so) and
//      compares the ids with gotune's prompt_ids;
//   2. feeds gotune's prompt_ids to llama.cpp and decodes greedily as many
//      tokens as gotune generated (stopping early at an end-of-generation
//      token, as gotune does), and compares the ids;
//   3. with --probs FILE (gotune's next-token distributions after every
//      prefix of prompt_ids + ids, from internal/ggufcheck/nextprobs),
//      feeds that whole sequence to llama.cpp, takes its next-token
//      distribution at every position and compares them: the largest
//      probability difference over all positions and tokens must stay
//      under D (default 1e-4), and the most likely token must agree
//      wherever gotune's top two are further apart than that. This is what makes a
//      check of a random model meaningful, whose greedy output may repeat
//      one token: every position of the prompt and the whole distribution
//      count, not only the winners along one path.
// It prints one line per check and exits 1 on any difference; with
// --tolerant (for quantized files, whose rounding may flip a close call
// and moves probabilities) a continuation or distribution difference is
// reported but does not fail.
import { readFileSync } from "node:fs";
import { getLlama, LlamaLogLevel } from "node-llama-cpp";

const [modelPath, gotuneJSON, promptText, ...flags] = process.argv.slice(2);
const tolerant = flags.includes("--tolerant");
const flag = (name) => flags.includes(name) ? flags[flags.indexOf(name) + 1] : null;
const probsPath = flag("--probs");
// MAX_PROB_DIFF bounds |p_llama.cpp - p_gotune|. For float32 files both
// compute in float32 with different summation orders, which moves
// probabilities by ~1e-6; a wrong layout or scale moves them by 1e-2 and
// more.
const MAX_PROB_DIFF = Number(flag("--max-prob-diff") ?? 1e-4);
if (modelPath === "--probe") {
  await (await getLlama({ gpu: false, build: "never", logLevel: LlamaLogLevel.error })).dispose();
  process.exit(0);
}
if (!modelPath || !gotuneJSON || promptText === undefined) {
  console.error("usage: node gguf-greedy.mjs MODEL.gguf GOTUNE_JSON PROMPT_TEXT [--tolerant] [--probs FILE [--max-prob-diff D]]");
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
// Attention as the file's types say: a float32 key/value cache (llama.cpp
// defaults to float16) and no flash attention (whose CPU kernel rounds the
// queries to the cache's type). Both are llama.cpp's choices at run time,
// not part of the file, and their rounding (probabilities off by ~1e-3)
// would blur the comparison of float32 files.
const f32Cache = { flashAttention: false, experimentalKvCacheKeyType: "F32", experimentalKvCacheValueType: "F32" };
const context = await model.createContext({ contextSize: Math.min(want.prompt_ids.length + n + 8, model.trainContextSize), threads: 1, ...f32Cache });
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

const dists = probsPath === null ? null : await distributions([...want.prompt_ids, ...want.ids]);
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
if (!genOK && !tolerant) failed = true;
if (dists !== null && !compareDistributions(dists, JSON.parse(readFileSync(probsPath, "utf8"))) && !tolerant) failed = true;
process.exit(failed ? 1 : 0);

// distributions feeds seq to a fresh context and returns llama.cpp's
// next-token distribution after every prefix (a Map token -> probability
// per position), sampled greedily so that no sampler trims the vocabulary.
async function distributions(seq) {
  const ctx = await model.createContext({ contextSize: Math.min(seq.length + 8, model.trainContextSize), threads: 1, ...f32Cache });
  const input = seq.map((t) => [t, { generateNext: { probabilities: true, options: { temperature: 0 } } }]);
  const res = await ctx.getSequence().controlledEvaluate(input);
  await ctx.dispose();
  return seq.map((_, i) => res[i]?.next?.probabilities ?? new Map());
}

// compareDistributions prints how far llama.cpp's distributions are from
// gotune's (rows of probabilities per position) and reports whether they
// agree.
function compareDistributions(dists, want) {
  let maxDiff = 0, where = "", top1 = 0, decisive = 0, flips = [];
  const rows = Math.min(dists.length, want.length);
  for (let i = 0; i < rows; i++) {
    const p = dists[i], q = want[i];
    if (p.size !== q.length) {
      console.log(`  next-token distributions: DIFFER at position ${i}: llama.cpp has ${p.size} tokens, gotune ${q.length}`);
      return false;
    }
    for (let t = 0; t < q.length; t++) {
      const d = Math.abs((p.get(t) ?? 0) - q[t]);
      if (d > maxDiff) { maxDiff = d; where = `position ${i}, token ${t}`; }
    }
    const order = q.map((v, t) => [v, t]).sort((a, b) => b[0] - a[0]);
    const llamaTop = p.keys().next().value;
    if (llamaTop === order[0][1]) top1++;
    if (order[0][0] - order[1][0] > MAX_PROB_DIFF) {
      decisive++;
      if (llamaTop !== order[0][1]) flips.push(i);
    }
  }
  const ok = rows === dists.length && rows === want.length && maxDiff <= MAX_PROB_DIFF && flips.length === 0;
  console.log(`  next-token distributions: ${ok ? "same" : "DIFFER"} (${rows} positions x ${want[0]?.length} tokens: ` +
    `max |p_llama.cpp - p_gotune| ${maxDiff.toExponential(2)} (bound ${MAX_PROB_DIFF}) at ${where || "-"}; most likely token same at ${top1}/${rows}, ` +
    `${decisive} decisive${flips.length ? `, flipped at ${JSON.stringify(flips)}` : ""})`);
  return ok;
}
