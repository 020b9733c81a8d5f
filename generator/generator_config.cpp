#include "generator/generator_config.h"

namespace llamarl {

GeneratorConfig GeneratorConfig::FromJson(const Json& j, const std::string& path) {
  GeneratorConfig c;
  ConfigReader r(j, path);
  r.Read("max_slots", &c.engine.max_slots, Range::AtLeast(1), "concurrent sequences per generator replica");
  r.Read("kv_cache_bytes", &c.engine.kv_cache.bytes, Range::AtLeast(0),
         "KV cache per rank in bytes (0 = kv_cache_fraction, else max_slots longest sequences)");
  r.Read("kv_cache_fraction", &c.engine.kv_cache.fraction, Range::Closed(0, 1),
         "share of the memory left after loading the weights (0 = off)");
  r.Read("kv_block_size", &c.engine.kv_cache.block_size, Range::AtLeast(1), "tokens per KV block");
  r.Read("weight_dtype", &c.weight_dtype, {"bfloat16", "float32", "float8_e4m3"},
         "dtype of the generator's weights (float8_e4m3: the layers' projections, computing in bfloat16)");
  r.Finish();
  c.engine.fp8_weights = c.weight_dtype == "float8_e4m3";
  return c;
}

void ReadSamplingParams(ConfigReader& r, SamplingParams* p) {
  r.Read("temperature", &p->temperature, Range::AtLeast(0), "sampling temperature (0 = greedy)");
  r.Read("top_k", &p->top_k, Range::AtLeast(0), "top-k sampling (0 = off)");
  r.Read("top_p", &p->top_p, Range::OpenClosed(0, 1), "nucleus sampling mass");
  r.Read("max_new_tokens", &p->max_new_tokens, Range::AtLeast(1), "longest response");
  r.Read("stop_strings", &p->stop_strings, "texts that end a response");
}

at::ScalarType GeneratorConfig::WeightDtype() const {
  return weight_dtype == "float32" ? at::kFloat : at::kBFloat16;
}

// The engine's own flag (set from weight_dtype above), so that the job's weight pushes and the engines
// they feed read one value and cannot disagree about the encoding.
bool GeneratorConfig::Fp8Weights() const { return engine.fp8_weights; }

}  // namespace llamarl
