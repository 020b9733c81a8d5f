// The tokenizer that `llamarl init` writes beside a tiny checkpoint: a real Hugging Face
// tokenizer.json (byte-level BPE, Qwen2's pre-tokenizer regex, ChatML special tokens) with the 256
// byte tokens and no merges, so that a tiny model keeps a tiny embedding (259 rows) and every digit is
// its own token, which is what small models learning arithmetic need. HF tools load it as they load
// Qwen2's.
#pragma once

#include "core/config.h"

#include <cstdint>

namespace llamarl {

struct TinyTokenizerIds {
  static constexpr int64_t kEndOfText = 256;  // <|endoftext|>, also padding
  static constexpr int64_t kImStart = 257;    // <|im_start|>
  static constexpr int64_t kImEnd = 258;      // <|im_end|>, end of an assistant turn
  static constexpr int64_t kVocabSize = 259;
};

Json MakeTinyTokenizerJson();
// tokenizer_config.json: special tokens and the ChatML chat template.
Json MakeTinyTokenizerConfigJson();

}  // namespace llamarl
