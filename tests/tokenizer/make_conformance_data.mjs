// Extracts the Llama-3 and Llama-2 vocabularies shipped in the npm packages `llama3-tokenizer-js`
// and `llama-tokenizer-js` (independent JavaScript tokenizers), writes them in the forms Tandem
// reads (a Hugging Face tokenizer.json; a GGUF-like JSON of tokens/scores/types), generates
// varied strings from a fixed seed and records the JavaScript token ids for each.
//
// Usage: node make_conformance_data.mjs OUT_DIR [COUNT] [SEED]
//        node make_conformance_data.mjs --bench TEXT_FILE   (prints JS encoding speed as JSON)
import fs from 'node:fs';
import path from 'node:path';
import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);
const here = path.dirname(new URL(import.meta.url).pathname);
const modules = path.resolve(here, '..', 'node_modules');

async function load(name, file) {
  const full = path.join(modules, name, file);
  if (!fs.existsSync(full)) {
    console.error(`npm package '${name}' is missing from tests/node_modules: run scripts/install-deps.sh`);
    process.exit(3);
  }
  return (await import(full)).default;
}

const llama3 = await load('llama3-tokenizer-js', 'bundle/llama3-tokenizer-with-baked-data.js');
const llama2 = await load('llama-tokenizer-js', 'llama-tokenizer.js');

const LLAMA3_REGEX = "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";

function mergesByPriority(map) {
  return [...map.entries()].sort((a, b) => a[1] - b[1]).map(([k]) => k);
}

function llama3TokenizerJson() {
  const vocab = {};
  const added = [];
  llama3.vocabById.forEach((t, id) => {
    if (id >= 128000) {
      added.push({ id, content: t, single_word: false, lstrip: false, rstrip: false, normalized: false, special: true });
    }
    vocab[t] = id;
  });
  return {
    version: '1.0', truncation: null, padding: null, added_tokens: added, normalizer: null,
    pre_tokenizer: { type: 'Sequence', pretokenizers: [
      { type: 'Split', pattern: { Regex: LLAMA3_REGEX }, behavior: 'Isolated', invert: false },
      { type: 'ByteLevel', add_prefix_space: false, trim_offsets: true, use_regex: false }] },
    post_processor: null,
    decoder: { type: 'ByteLevel', add_prefix_space: true, trim_offsets: true, use_regex: true },
    model: { type: 'BPE', dropout: null, unk_token: null, continuing_subword_prefix: null,
             end_of_word_suffix: null, fuse_unk: false, byte_fallback: false, ignore_merges: true,
             vocab, merges: mergesByPriority(llama3.merges) },
  };
}

// Llama-2 in the form a GGUF file stores it: tokens, scores and types (<unk> is type 2, <s> and
// </s> control (3), <0xXX> byte tokens (6)). The package ships merges, not SentencePiece scores:
// a token's score is minus the priority of the first merge that makes it (higher merges first),
// which orders merges as the scores of the original model do.
function llama2GgufLike() {
  const tokens = llama2.vocabById;
  const types = tokens.map((t, id) => (id === 0 ? 2 : id <= 2 ? 3 : /^<0x[0-9A-F]{2}>$/.test(t) ? 6 : 1));
  const ids = new Map(tokens.map((t, id) => [t, id]));
  const scores = tokens.map(() => 0);
  const made = tokens.map(() => false);
  for (const [key, priority] of [...llama2.merges.entries()].sort((a, b) => a[1] - b[1])) {
    const id = ids.get(key.replace(' ', ''));
    if (id !== undefined && !made[id]) { made[id] = true; scores[id] = -priority; }
  }
  // Multi-character pieces no merge makes can never be produced: the lowest score of all.
  tokens.forEach((t, id) => { if (types[id] === 1 && !made[id] && [...t].length > 1) scores[id] = -1e9; });
  return { model: 'llama', tokens, scores, token_types: types, bos_id: 1, eos_id: 2, unk_id: 0, add_bos: true };
}

function llama2TokenizerJson() {
  const vocab = {};
  llama2.vocabById.forEach((t, id) => { vocab[t] = id; });
  const special = (id, content) => ({ id, content, single_word: false, lstrip: false, rstrip: false, normalized: false, special: true });
  return {
    version: '1.0', truncation: null, padding: null,
    added_tokens: [special(0, '<unk>'), special(1, '<s>'), special(2, '</s>')],
    normalizer: { type: 'Sequence', normalizers: [
      { type: 'Prepend', prepend: '\u2581' }, { type: 'Replace', pattern: { String: ' ' }, content: '\u2581' }] },
    pre_tokenizer: null,
    post_processor: null,
    decoder: { type: 'Sequence', decoders: [
      { type: 'Replace', pattern: { String: '\u2581' }, content: ' ' }, { type: 'ByteFallback' },
      { type: 'Fuse' }, { type: 'Strip', content: ' ', start: 1, stop: 0 }] },
    model: { type: 'BPE', dropout: null, unk_token: '<unk>', continuing_subword_prefix: null,
             end_of_word_suffix: null, fuse_unk: true, byte_fallback: true,
             vocab, merges: mergesByPriority(llama2.merges) },
  };
}

// mulberry32: a small seeded PRNG, so every run generates the same strings.
function rng(seed) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6D2B79F5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function generate(count, seed) {
  const r = rng(seed);
  const int = (n) => Math.floor(r() * n);
  const pick = (a) => a[int(a.length)];
  const cp = (lo, hi) => String.fromCodePoint(lo + int(hi - lo + 1));
  const repeat = (f, n) => Array.from({ length: n }, f).join('');
  const words = ['the', 'The', 'quick', 'brown', 'fox', 'jumps', 'over', 'lazy', 'dog', 'hello', 'world',
    'tokenizer', 'server', 'Tandem', 'prefill', 'decode', 'cache', 'München', 'naïve', 'résumé',
    'don\'t', 'I\'LL', 'we\'ve', 'it\'s', 'THEY\'RE', 'you\'d', 'rock\'n\'roll', 'x', 'a', 'I'];
  const code = ['def f(x):\n    return x * 2\n', 'int main() { return 0; }', 'for (i = 0; i < n; ++i) {',
    '  if (a != b && c >= d) {\n\t\tfoo(bar);\n  }', 'const x = {"key": [1, 2, 3]};', '#include <vector>',
    'SELECT * FROM users WHERE id = 42;', '$ ls -la /tmp | grep "*.txt"', '<div class="a">text</div>',
    'x+=1;y-=2;z*=3', '// comment', '/* block */', 'a_b_c = d__e', '0x7FFF_FFFF', 'println!("{}", v);'];
  const specials = ['<|begin_of_text|>', '<|end_of_text|>', '<|eot_id|>', '<|start_header_id|>',
    '<|end_header_id|>', '<|reserved_special_token_5|>', '<|reserved_special_token_250|>', '<|python_tag|>',
    '<|eom_id|>', '<|not_a_token|>', '<|', '|>', '<s>', '</s>', '<unk>', '<0x41>', '[INST]', '<|im_start|>'];
  const gens = [
    () => repeat(() => pick(words), 1 + int(8)),
    () => Array.from({ length: 1 + int(8) }, () => pick(words)).join(pick([' ', '  ', ', ', '. ', '\n', '-'])),
    () => pick(code),
    () => repeat(() => pick([' ', '  ', '\t', '\n', '\r\n', '   ', '\n\n', ' \n ', '\u00a0', '\u3000']), 1 + int(6)),
    () => String(int(1e9)) + pick(['', '.', ',', ' ']) + String(int(1e6)),
    () => repeat(() => cp(0x30, 0x39), 1 + int(20)),
    () => repeat(() => cp(0x4E00, 0x9FA5), 1 + int(10)),
    () => repeat(() => cp(0x3041, 0x3096), 1 + int(8)) + repeat(() => cp(0x30A1, 0x30FA), int(6)),
    () => repeat(() => cp(0xAC00, 0xD7A3), 1 + int(6)),
    () => repeat(() => pick([cp(0x1F300, 0x1F64F), cp(0x1F680, 0x1F6C5), '\u{1F44D}\u{1F3FD}',
      '\u{1F468}\u200D\u{1F469}\u200D\u{1F467}', '\u2764\uFE0F', '\u{1F1EB}\u{1F1F7}']), 1 + int(5)),
    () => repeat(() => pick([cp(0xC0, 0xFF), 'e\u0301', 'a\u0308', cp(0x100, 0x17F), 'n\u0303']), 1 + int(8)),
    () => pick(specials) + pick(['', ' ', 'text', '\n']) + pick(specials),
    () => repeat(() => cp(0x410, 0x44F), 1 + int(8)) + ' ' + repeat(() => cp(0x3B1, 0x3C9), 1 + int(6)),
    () => repeat(() => cp(0x627, 0x64A), 1 + int(6)) + ' ' + repeat(() => cp(0x5D0, 0x5EA), 1 + int(5)),
    () => repeat(() => cp(0x915, 0x939), 1 + int(5)) + '\u093E ' + repeat(() => cp(0xE01, 0xE2E), 1 + int(5)),
    () => repeat(() => pick(['!', '?', '...', '--', '(', ')', '[', ']', '{', '}', '"', '\'', '`', '~', '@',
      '#', '%', '^', '&', '*', '_', '=', '+', '|', '\\', '/', ':', ';', '<', '>', '\u2014', '\u00ab', '\u00bb']), 1 + int(8)),
    () => repeat(() => cp(0x20, 0x7E), 1 + int(30)),
    () => pick(['\u00b2', '\u00bd', '\u2167', '\u0663\u0664', '\u2460', '\u00b5', '\u2126', '\u212a']) + String(int(100)),
  ];
  const out = [];
  for (let i = 0; i < count; ++i) {
    const parts = 1 + int(5);
    let s = '';
    for (let k = 0; k < parts; ++k) s += pick(gens)() + pick(['', '', ' ', '\n', '  ']);
    out.push(s);
  }
  // A few fixed edge cases.
  out.push('', ' ', '  ', '\n', 'a', ' a', 'a ', '  leading', 'trailing  ', '\t\t', '\r\n\r\n');
  return out;
}

function bench(file) {
  const text = fs.readFileSync(file, 'utf8');
  const bytes = Buffer.byteLength(text);
  const result = {};
  for (const [name, encode] of [
    ['llama3-tokenizer-js', (t) => llama3.encode(t, { bos: false, eos: false })],
    ['llama-tokenizer-js', (t) => llama2.encode(t, false, true)]]) {
    // Encode line by line, as a server tokenizes one prompt at a time (the whole text at once
    // is quadratic in these libraries' merge loops for long pieces).
    const lines = text.split(/(?<=\n)/);
    encode(lines.slice(0, 50).join(''));  // warm up
    const t0 = process.hrtime.bigint();
    let tokens = 0;
    for (const line of lines) tokens += encode(line).length;
    const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
    result[name] = { mb_per_s: bytes / 1e6 / seconds, tokens };
  }
  console.log(JSON.stringify(result));
}

const args = process.argv.slice(2);
if (args[0] === '--bench') {
  bench(args[1]);
} else {
  const out = args[0];
  const count = Number(args[1] || 1200);
  const seed = Number(args[2] || 20240601);
  if (!out) { console.error('usage: make_conformance_data.mjs OUT_DIR [COUNT] [SEED]'); process.exit(2); }
  fs.mkdirSync(path.join(out, 'llama3'), { recursive: true });
  fs.mkdirSync(path.join(out, 'llama2'), { recursive: true });
  fs.writeFileSync(path.join(out, 'llama3', 'tokenizer.json'), JSON.stringify(llama3TokenizerJson()));
  fs.writeFileSync(path.join(out, 'llama3', 'tokenizer_config.json'), JSON.stringify({
    add_bos_token: true, bos_token: '<|begin_of_text|>', eos_token: '<|end_of_text|>' }));
  fs.writeFileSync(path.join(out, 'llama2', 'vocab.json'), JSON.stringify(llama2GgufLike()));
  fs.writeFileSync(path.join(out, 'llama2', 'tokenizer.json'), JSON.stringify(llama2TokenizerJson()));
  fs.writeFileSync(path.join(out, 'llama2', 'tokenizer_config.json'), JSON.stringify({
    add_bos_token: true, bos_token: '<s>', eos_token: '</s>' }));
  const strings = generate(count, seed);
  const cases = {
    seed, strings,
    llama3: strings.map((s) => llama3.encode(s, { bos: false, eos: false })),
    llama2: strings.map((s) => llama2.encode(s, false, true)),
  };
  fs.writeFileSync(path.join(out, 'cases.json'), JSON.stringify(cases));
  console.log(`wrote ${strings.length} strings (seed ${seed}) to ${out}`);
}
