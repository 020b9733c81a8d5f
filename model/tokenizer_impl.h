// The loaded state behind llamarl::Tokenizer, shared by the loaders (tokenizer_json.cpp,
// tokenizer_gpt2.cpp) and the encode/decode code (tokenizer.cpp). Internal to model/.
#pragma once

#include "model/tokenizer.h"
#include "model/tokenizer_added_tokens.h"
#include "model/tokenizer_bpe.h"
#include "model/tokenizer_pretokenizer.h"

#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

namespace llamarl {

struct Tokenizer::Impl {
  // Filled by a loader.
  std::unique_ptr<tokenizer_internal::BpeModel> bpe;
  tokenizer_internal::PreTokenizerPipeline pipeline;
  std::vector<AddedToken> added_tokens;
  std::vector<int64_t> post_prefix_ids, post_suffix_ids;  // post-processor ids around one sequence
  SpecialTokenIds special_ids;
  std::string chat_template;

  // Derived by Finalize().
  tokenizer_internal::AddedTokenMatcher raw_matcher;         // tokens with normalized == false
  tokenizer_internal::AddedTokenMatcher normalized_matcher;  // tokens with normalized == true
  std::unordered_map<std::string, int64_t> added_by_content;
  std::unordered_map<int64_t, size_t> added_by_id;  // id -> index in added_tokens
  int64_t vocab_size = 0;

  // Builds the matchers and lookup tables; checks that added token ids do not collide.
  void Finalize(const std::string& source);
};

// Wraps a finalized Impl.
Tokenizer MakeTokenizer(std::shared_ptr<const Tokenizer::Impl> impl);

// Reads tokenizer_config.json's bos_token / eos_token / pad_token / chat_template into *impl.
void ApplyTokenizerConfig(std::string_view config_json_text, Tokenizer::Impl* impl);

}  // namespace llamarl
