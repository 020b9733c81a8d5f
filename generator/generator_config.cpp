#include "generator/generator_config.h"

namespace llamarl {

GeneratorConfig GeneratorConfig::FromJson(const Json& j, const std::string& path) {
  GeneratorConfig c;
  ConfigReader r(j, path);
  r.Read("kv_cache_bytes", &c.kv_cache.bytes, Range::AtLeast(0),
         "KV cache per rank in bytes (0 = kv_cache_fraction, else max_slots longest sequences)");
  r.Read("kv_cache_fraction", &c.kv_cache.fraction, Range::Closed(0, 1),
         "share of the memory left after loading the weights (0 = off)");
  r.Read("kv_block_size", &c.kv_cache.block_size, Range::AtLeast(1), "tokens per KV block");
  r.Read("weight_dtype", &c.weight_dtype, {"bfloat16", "float32"}, "dtype of the generator's weights and KV cache");
  r.Finish();
  return c;
}

at::ScalarType GeneratorConfig::WeightDtype() const {
  return weight_dtype == "float32" ? at::kFloat : at::kBFloat16;
}

}  // namespace llamarl
