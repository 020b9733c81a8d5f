// Loading HF tokenizer.json (byte-level BPE) and tokenizer_config.json.
#include "core/check.h"
#include "core/config.h"
#include "model/tokenizer.h"
#include "model/tokenizer_impl.h"

namespace llamarl {
namespace {

using tokenizer_internal::BpeModel;
using tokenizer_internal::BpeOptions;
using tokenizer_internal::PreTokenizerPipeline;
using tokenizer_internal::SplitBehavior;

constexpr const char* kFile = "tokenizer.json";

Json ParseJson(std::string_view text, const char* file) {
  Json j = Json::parse(text.begin(), text.end(), nullptr, /*allow_exceptions=*/false);
  LLAMARL_CHECK(!j.is_discarded(), file, ": not valid JSON; expected the file Hugging Face writes");
  LLAMARL_CHECK(j.is_object(), file, ": expected a JSON object at the top level, got ", DescribeJson(j));
  return j;
}

const Json& Member(const Json& object, const char* key, const std::string& path) {
  LLAMARL_CHECK(object.is_object(), kFile, ": ", path, ": expected an object, got ", DescribeJson(object));
  auto it = object.find(key);
  LLAMARL_CHECK(it != object.end(), kFile, ": ", path, ": missing key '", key, "'");
  return *it;
}

std::string StringMember(const Json& object, const char* key, const std::string& path) {
  const Json& value = Member(object, key, path);
  LLAMARL_CHECK(value.is_string(), kFile, ": ", path, ".", key, ": expected a string, got ", DescribeJson(value));
  return value.get<std::string>();
}

// An optional boolean; absent or null gives `fallback`.
bool BoolMember(const Json& object, const char* key, bool fallback, const std::string& path) {
  auto it = object.find(key);
  if (it == object.end() || it->is_null()) return fallback;
  LLAMARL_CHECK(it->is_boolean(), kFile, ": ", path, ".", key, ": expected true or false, got ", DescribeJson(*it));
  return it->get<bool>();
}

const Json& ArrayMember(const Json& object, const char* key, const std::string& path) {
  const Json& value = Member(object, key, path);
  LLAMARL_CHECK(value.is_array(), kFile, ": ", path, ".", key, ": expected an array, got ", DescribeJson(value));
  return value;
}

int64_t IdValue(const Json& value, const std::string& path) {
  LLAMARL_CHECK(value.is_number_integer(), kFile, ": ", path, ": expected an integer token id, got ",
                DescribeJson(value));
  return value.get<int64_t>();
}

// Calls read(item, item_path) for each element of a Sequence component's list `key`.
template <typename ReadItem>
void ForEachInSequence(const Json& j, const char* key, const std::string& path, ReadItem read) {
  const Json& list = ArrayMember(j, key, path);
  for (size_t i = 0; i < list.size(); ++i) read(list[i], path + "." + key + "[" + std::to_string(i) + "]");
}

[[noreturn]] void Unsupported(const std::string& path, const std::string& type, const char* supported) {
  LLAMARL_FAIL(kFile, ": ", path, " type '", type, "' is not supported; supported: ", supported);
}

void ReadNormalizer(const Json& j, const std::string& path, PreTokenizerPipeline* pipeline) {
  if (j.is_null()) return;
  const std::string type = StringMember(j, "type", path);
  if (type == "NFC") {
    pipeline->nfc = true;
  } else if (type == "Sequence") {
    ForEachInSequence(j, "normalizers", path,
                      [&](const Json& item, const std::string& p) { ReadNormalizer(item, p, pipeline); });
  } else {
    Unsupported(path, type, "NFC, Sequence (or null)");
  }
}

SplitBehavior ReadBehavior(const Json& j, const std::string& path) {
  const std::string name = StringMember(j, "behavior", path);
  if (name == "Removed") return SplitBehavior::kRemoved;
  if (name == "Isolated") return SplitBehavior::kIsolated;
  if (name == "MergedWithPrevious") return SplitBehavior::kMergedWithPrevious;
  if (name == "MergedWithNext") return SplitBehavior::kMergedWithNext;
  if (name == "Contiguous") return SplitBehavior::kContiguous;
  LLAMARL_FAIL(kFile, ": ", path, ".behavior '", name,
               "' is unknown; expected Removed, Isolated, MergedWithPrevious, MergedWithNext or Contiguous");
}

void ReadPreTokenizer(const Json& j, const std::string& path, PreTokenizerPipeline* pipeline) {
  if (j.is_null()) return;
  const std::string type = StringMember(j, "type", path);
  if (type == "ByteLevel") {
    tokenizer_internal::ByteLevelOptions options;
    options.add_prefix_space = BoolMember(j, "add_prefix_space", true, path);
    options.use_regex = BoolMember(j, "use_regex", true, path);
    pipeline->steps.push_back(tokenizer_internal::MakeByteLevelStep(options));
    pipeline->has_byte_level = true;
  } else if (type == "Split") {
    tokenizer_internal::SplitOptions options;
    const Json& pattern = Member(j, "pattern", path);
    const bool is_string = pattern.is_object() && pattern.contains("String");
    LLAMARL_CHECK(is_string || (pattern.is_object() && pattern.contains("Regex")), kFile, ": ", path,
                  ".pattern: expected {\"Regex\": ...} or {\"String\": ...}, got ", DescribeJson(pattern));
    options.pattern = StringMember(pattern, is_string ? "String" : "Regex", path + ".pattern");
    options.is_regex = !is_string;
    options.behavior = ReadBehavior(j, path);
    options.invert = BoolMember(j, "invert", false, path);
    options.source = std::string(kFile) + ": " + path;
    pipeline->steps.push_back(tokenizer_internal::MakeSplitStep(options));
  } else if (type == "Sequence") {
    ForEachInSequence(j, "pretokenizers", path,
                      [&](const Json& item, const std::string& p) { ReadPreTokenizer(item, p, pipeline); });
  } else {
    Unsupported(path, type, "ByteLevel, Split, Sequence (or null)");
  }
}

void ReadDecoder(const Json& j, const std::string& path) {
  LLAMARL_CHECK(!j.is_null(), kFile, ": ", path, " is null; byte-level BPE needs the ByteLevel decoder");
  const std::string type = StringMember(j, "type", path);
  if (type == "ByteLevel") return;
  if (type == "Sequence") {
    LLAMARL_CHECK(!ArrayMember(j, "decoders", path).empty(), kFile, ": ", path,
                  ".decoders is empty; expected [ByteLevel]");
    ForEachInSequence(j, "decoders", path, [](const Json& item, const std::string& p) { ReadDecoder(item, p); });
    return;
  }
  Unsupported(path, type, "ByteLevel, Sequence");
}

// Adds the ids a TemplateProcessing "single" template puts before and after the sequence.
void ReadTemplate(const Json& j, const std::string& path, Tokenizer::Impl* impl) {
  const Json& single = ArrayMember(j, "single", path);
  const Json& special_tokens = Member(j, "special_tokens", path);
  bool after_sequence = false;
  for (size_t i = 0; i < single.size(); ++i) {
    const std::string item_path = path + ".single[" + std::to_string(i) + "]";
    const Json& item = single[i];
    if (item.is_object() && item.contains("Sequence")) {
      LLAMARL_CHECK(!after_sequence, kFile, ": ", item_path, ": a second sequence in 'single'; expected one");
      after_sequence = true;
      continue;
    }
    const std::string name = StringMember(Member(item, "SpecialToken", item_path), "id", item_path + ".SpecialToken");
    const std::string token_path = path + ".special_tokens." + name;
    const Json& ids = ArrayMember(Member(special_tokens, name.c_str(), path + ".special_tokens"), "ids", token_path);
    auto& target = after_sequence ? impl->post_suffix_ids : impl->post_prefix_ids;
    for (size_t k = 0; k < ids.size(); ++k) target.push_back(IdValue(ids[k], token_path + ".ids"));
  }
}

void ReadPostProcessor(const Json& j, const std::string& path, Tokenizer::Impl* impl) {
  if (j.is_null()) return;
  const std::string type = StringMember(j, "type", path);
  if (type == "ByteLevel") return;  // only trims offsets, which this tokenizer does not report
  if (type == "TemplateProcessing") {
    ReadTemplate(j, path, impl);
  } else if (type == "Sequence") {
    ForEachInSequence(j, "processors", path,
                      [&](const Json& item, const std::string& p) { ReadPostProcessor(item, p, impl); });
  } else {
    Unsupported(path, type, "ByteLevel, TemplateProcessing, Sequence (or null)");
  }
}

std::vector<std::pair<std::string, std::string>> ReadMerges(const Json& list) {
  std::vector<std::pair<std::string, std::string>> merges;
  merges.reserve(list.size());
  for (size_t i = 0; i < list.size(); ++i) {
    const Json& m = list[i];
    const std::string path = "model.merges[" + std::to_string(i) + "]";
    if (m.is_string()) {
      const std::string& s = m.get_ref<const std::string&>();
      const size_t space = s.find(' ');
      LLAMARL_CHECK(space != std::string::npos && space > 0 && space + 1 < s.size() &&
                        s.find(' ', space + 1) == std::string::npos,
                    kFile, ": ", path, " is ", DescribeJson(m), "; expected two tokens separated by one space");
      merges.emplace_back(s.substr(0, space), s.substr(space + 1));
    } else {
      LLAMARL_CHECK(m.is_array() && m.size() == 2 && m[0].is_string() && m[1].is_string(), kFile, ": ", path,
                    " is ", DescribeJson(m), "; expected \"left right\" or [\"left\", \"right\"]");
      merges.emplace_back(m[0].get<std::string>(), m[1].get<std::string>());
    }
  }
  return merges;
}

std::unique_ptr<BpeModel> ReadModel(const Json& j) {
  const std::string path = "model";
  const std::string type = j.is_object() && j.contains("type") ? StringMember(j, "type", path) : "BPE";
  if (type != "BPE") Unsupported(path, type, "BPE");
  LLAMARL_CHECK(!BoolMember(j, "byte_fallback", false, path), kFile,
                ": model.byte_fallback true is not supported; byte-level BPE files set it to false");
  LLAMARL_CHECK(!j.contains("dropout") || j["dropout"].is_null(), kFile, ": model.dropout is ",
                DescribeJson(j["dropout"]), "; BPE dropout is for training, expected null");
  for (const char* affix : {"continuing_subword_prefix", "end_of_word_suffix"}) {
    auto it = j.find(affix);
    LLAMARL_CHECK(it == j.end() || it->is_null() || (it->is_string() && it->get_ref<const std::string&>().empty()),
                  kFile, ": model.", affix, " is ", DescribeJson(it == j.end() ? Json() : *it),
                  "; not supported for byte-level BPE, expected \"\" or null");
  }
  const Json& vocab_json = Member(j, "vocab", path);
  LLAMARL_CHECK(vocab_json.is_object(), kFile, ": model.vocab: expected an object {token: id}, got ",
                DescribeJson(vocab_json));
  std::unordered_map<std::string, int64_t> vocab;
  vocab.reserve(vocab_json.size());
  for (auto it = vocab_json.begin(); it != vocab_json.end(); ++it)
    vocab.emplace(it.key(), IdValue(it.value(), "model.vocab." + it.key()));
  BpeOptions options;
  options.ignore_merges = BoolMember(j, "ignore_merges", false, path);
  options.fuse_unk = BoolMember(j, "fuse_unk", false, path);
  options.source = std::string(kFile) + ": model";
  auto unk = j.find("unk_token");
  if (unk != j.end() && !unk->is_null()) {
    const std::string name = StringMember(j, "unk_token", path);
    auto found = vocab.find(name);
    LLAMARL_CHECK(found != vocab.end(), kFile, ": model.unk_token '", name, "' is not in model.vocab");
    options.unk_id = found->second;
  }
  return std::make_unique<BpeModel>(std::move(vocab), ReadMerges(ArrayMember(j, "merges", path)), options);
}

std::vector<AddedToken> ReadAddedTokens(const Json& root) {
  std::vector<AddedToken> tokens;
  auto it = root.find("added_tokens");
  if (it == root.end() || it->is_null()) return tokens;
  LLAMARL_CHECK(it->is_array(), kFile, ": added_tokens: expected an array, got ", DescribeJson(*it));
  for (size_t i = 0; i < it->size(); ++i) {
    const Json& t = (*it)[i];
    const std::string path = "added_tokens[" + std::to_string(i) + "]";
    AddedToken token;
    token.id = IdValue(Member(t, "id", path), path + ".id");
    token.content = StringMember(t, "content", path);
    token.special = BoolMember(t, "special", false, path);
    token.lstrip = BoolMember(t, "lstrip", false, path);
    token.rstrip = BoolMember(t, "rstrip", false, path);
    token.single_word = BoolMember(t, "single_word", false, path);
    token.normalized = BoolMember(t, "normalized", !token.special, path);  // HF's default
    tokens.push_back(std::move(token));
  }
  return tokens;
}

// A config token entry: "<|im_end|>", {"content": "<|im_end|>", ...} or null.
std::optional<std::string> ConfigTokenName(const Json& config, const char* key) {
  auto it = config.find(key);
  if (it == config.end() || it->is_null()) return std::nullopt;
  if (it->is_string()) return it->get<std::string>();
  LLAMARL_CHECK(it->is_object() && it->contains("content") && (*it)["content"].is_string(),
                "tokenizer_config.json: ", key, ": expected a string or {\"content\": string}, got ",
                DescribeJson(*it));
  return (*it)["content"].get<std::string>();
}

}  // namespace

void ApplyTokenizerConfig(std::string_view config_json_text, Tokenizer::Impl* impl) {
  const Json config = ParseJson(config_json_text, "tokenizer_config.json");
  auto resolve = [&](const char* key, std::optional<int64_t>* out) {
    const std::optional<std::string> name = ConfigTokenName(config, key);
    if (!name) return;
    auto added = impl->added_by_content.find(*name);
    std::optional<int64_t> id;
    if (added != impl->added_by_content.end()) id = added->second;
    else if (auto v = impl->bpe->vocab().find(*name); v != impl->bpe->vocab().end()) id = v->second;
    LLAMARL_CHECK(id.has_value(), "tokenizer_config.json: ", key, " '", *name,
                  "' is neither an added token nor in the vocabulary; fix the config or the tokenizer files");
    *out = id;
  };
  resolve("bos_token", &impl->special_ids.bos);
  resolve("eos_token", &impl->special_ids.eos);
  resolve("pad_token", &impl->special_ids.pad);
  auto chat = config.find("chat_template");
  if (chat != config.end() && chat->is_string()) impl->chat_template = chat->get<std::string>();
}

Tokenizer Tokenizer::FromTokenizerJson(std::string_view json_text, std::string_view config_json_text) {
  auto impl = std::make_shared<Impl>();
  try {
    const Json root = ParseJson(json_text, kFile);
    ReadNormalizer(root.value("normalizer", Json()), "normalizer", &impl->pipeline);
    ReadPreTokenizer(root.value("pre_tokenizer", Json()), "pre_tokenizer", &impl->pipeline);
    // Without it the text never reaches the byte alphabet and BPE would silently drop characters.
    LLAMARL_CHECK(impl->pipeline.has_byte_level, kFile, ": pre_tokenizer has no ByteLevel step; only byte-level ",
                  "BPE is supported, which needs one (alone or last in a Sequence)");
    impl->bpe = ReadModel(Member(root, "model", "(root)"));
    ReadDecoder(root.value("decoder", Json()), "decoder");
    ReadPostProcessor(root.value("post_processor", Json()), "post_processor", impl.get());
    impl->added_tokens = ReadAddedTokens(root);
    impl->Finalize(kFile);
    // Without a config, the post-processor's leading token is the BOS it adds.
    if (!impl->post_prefix_ids.empty()) impl->special_ids.bos = impl->post_prefix_ids.front();
    if (!config_json_text.empty()) ApplyTokenizerConfig(config_json_text, impl.get());
  } catch (const Json::exception& e) {
    // Every expected shape is checked above; this is the backstop for any shape that slipped through.
    LLAMARL_FAIL(kFile, ": unexpected structure: ", e.what());
  }
  return MakeTokenizer(std::move(impl));
}

}  // namespace llamarl
