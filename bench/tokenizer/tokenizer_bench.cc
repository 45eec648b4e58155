// Encoding speed of Tandem's tokenizers on a mixed text (English prose, code, numbers, CJK,
// accents, emoji), for the real Llama-3 (byte-level BPE) and Llama-2 (SentencePiece)
// vocabularies and the demo vocabulary.
//
// Usage: tokenizer_bench --write-text FILE        writes the benchmark text (about 1 MB)
//        tokenizer_bench DATA_DIR TEXT_FILE        DATA_DIR from make_conformance_data.mjs
// Prints one JSON object per line: {"name": ..., "mb_per_s": ..., "tokens": ...}.
#include <chrono>
#include <cstdio>
#include <fstream>
#include <functional>
#include <iostream>
#include <sstream>
#include <thread>

#include "model/bpe_trainer.h"
#include "model/tokenizer.h"
#include "model/vocab.h"
#include "nlohmann/json.hpp"

namespace {

using tandem::model::Tokenizer;

std::string ReadAll(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::string MixedText() {
  const std::string prose = tandem::model::DemoTrainingCorpus();
  const char* const extras[] = {
      "def handler(request):\n    return {\"status\": 200, \"body\": request.json()}\n",
      "for (size_t i = 0; i < n; ++i) { sum += values[i] * 0.5f; }\n",
      "東京は日本の首都です。人口は約1400万人です。\n",
      "Ein schönes Café in München, très naïve façade, Ångström über alles.\n",
      "Prices: $1,299.99 (2024-05-17) vs €1.049,00; id=0x7fff5fbff8a0.\n",
      "Great job 👍🏽🎉 see you soon 😀 — “quoted” «text».\n",
      "    \n\t\t  indented   text  with   runs    of   spaces\n",
  };
  std::string text;
  size_t prose_pos = 0;
  int k = 0;
  while (text.size() < 1'000'000) {
    const size_t take = std::min<size_t>(600, prose.size() - prose_pos);
    text += prose.substr(prose_pos, take);
    prose_pos = (prose_pos + take) % prose.size();
    text += "\n";
    text += extras[k++ % std::size(extras)];
  }
  return text;
}

std::vector<std::string_view> Lines(const std::string& text) {
  std::vector<std::string_view> lines;
  size_t start = 0;
  while (start < text.size()) {
    size_t end = text.find('\n', start);
    end = end == std::string::npos ? text.size() : end + 1;
    lines.push_back(std::string_view(text).substr(start, end - start));
    start = end;
  }
  return lines;
}

void Report(const std::string& name, double bytes, double seconds, size_t tokens) {
  nlohmann::json j = {{"name", name}, {"mb_per_s", bytes / 1e6 / seconds}, {"tokens", tokens}};
  std::cout << j.dump() << std::endl;
}

// Best of three runs of `encode_all`, which returns the number of tokens.
void Measure(const std::string& name, double bytes, const std::function<size_t()>& encode_all) {
  double best = 1e30;
  size_t tokens = 0;
  for (int run = 0; run < 3; ++run) {
    const auto t0 = std::chrono::steady_clock::now();
    tokens = encode_all();
    best = std::min(best,
                    std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
  }
  Report(name, bytes, best, tokens);
}

void Bench(const std::string& name, const Tokenizer& tok, const std::string& text,
           bool parse_special) {
  const auto lines = Lines(text);
  Measure(name + " (line by line)", text.size(), [&] {
    size_t n = 0;
    for (std::string_view line : lines) n += tok.Encode(line, false, parse_special).size();
    return n;
  });
  Measure(name + " (whole text)", text.size(),
          [&] { return tok.Encode(text, false, parse_special).size(); });
  const int threads = 4;
  Measure(name + " (4 threads, line by line)", text.size() * threads, [&] {
    std::vector<std::thread> pool;
    std::vector<size_t> counts(threads);
    for (int t = 0; t < threads; ++t) {
      pool.emplace_back([&, t] {
        for (std::string_view line : lines)
          counts[t] += tok.Encode(line, false, parse_special).size();
      });
    }
    for (auto& th : pool) th.join();
    return counts[0];
  });
}

}  // namespace

int main(int argc, char** argv) {
  if (argc == 3 && std::string(argv[1]) == "--write-text") {
    std::ofstream(argv[2], std::ios::binary) << MixedText();
    return 0;
  }
  if (argc != 3) {
    std::cerr << "usage: tokenizer_bench --write-text FILE | tokenizer_bench DATA_DIR TEXT_FILE\n";
    return 2;
  }
  const std::string dir = argv[1];
  const std::string text = ReadAll(argv[2]);
  auto llama3 = Tokenizer::FromHuggingFaceJson(ReadAll(dir + "/llama3/tokenizer.json"),
                                               ReadAll(dir + "/llama3/tokenizer_config.json"));
  auto llama2 = Tokenizer::FromHuggingFaceJson(ReadAll(dir + "/llama2/tokenizer.json"),
                                               ReadAll(dir + "/llama2/tokenizer_config.json"));
  auto demo_vocab = tandem::model::DemoVocab(8192);
  if (!llama3.ok() || !llama2.ok() || !demo_vocab.ok()) {
    std::cerr << "cannot build tokenizers: " << llama3.status() << " / " << llama2.status() << "\n";
    return 1;
  }
  auto demo = Tokenizer::FromVocab(*demo_vocab);
  Bench("tandem llama3", **llama3, text, true);
  Bench("tandem llama2", **llama2, text, false);
  Bench("tandem demo-8192", **demo, text, true);
  // The pre-tokenizer alone bounds what byte-level BPE can reach.
  Measure("tandem llama3 pre-tokenizer only", text.size(), [&] {
    std::vector<std::string_view> pieces;
    tandem::model::PreTokenize(tandem::model::PreTokenizer::kLlama3, text, &pieces);
    return pieces.size();
  });
  return 0;
}
