// Helpers shared by the weight-sync suites: a small GQA model whose head counts and intermediate size
// are divisible by every tensor-parallel degree from 1 to 4 (vocab deliberately not: the vocab split
// is uneven), deterministic full parameters, and shard references cut with at::chunk / narrow, written
// independently of the layout code they check.
#pragma once

#include "kernels/fp8.h"
#include "model/llama_config.h"
#include "model/shard_layout.h"

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>

#include <string>
#include <vector>

namespace llamarl::testing {

inline LlamaConfig SyncTestConfig() {
  TinyLlamaOptions o;
  o.vocab_size = 250;
  o.hidden_size = 96;
  o.num_layers = 2;
  o.num_heads = 24;
  o.num_kv_heads = 12;
  o.intermediate_size = 192;
  o.tie_word_embeddings = false;
  return TinyLlamaConfig(o);
}

// The same values on every rank: a fixed seed, one normal draw per parameter in order.
inline std::vector<at::Tensor> FullParams(const std::vector<ParamSpec>& specs, uint64_t seed = 1234) {
  at::Generator gen = at::detail::createCPUGenerator(seed);
  std::vector<at::Tensor> out;
  for (const auto& p : specs) out.push_back(at::randn(p.shape, gen, at::kFloat));
  return out;
}

inline bool EndsWith(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

// ZeRO-3 flat shard `rank` of `ranks`: all parameters flattened and concatenated, then near-equal
// contiguous ranges (the first total % ranks get one more element).
inline at::Tensor ExpectedFlatShard(const std::vector<at::Tensor>& full, int rank, int ranks) {
  std::vector<at::Tensor> flat;
  for (const auto& t : full) flat.push_back(t.reshape(-1));
  at::Tensor all = at::cat(flat);
  const int64_t n = all.numel(), base = n / ranks, extra = n % ranks;
  const int64_t start = rank * base + std::min<int64_t>(rank, extra);
  return all.narrow(0, start, base + (rank < extra ? 1 : 0)).clone();
}

// Rows [start, start + count) of `rank` under a near-equal split of `total` rows.
inline at::Tensor NearEqualRows(const at::Tensor& t, int rank, int ranks) {
  const int64_t n = t.size(0), base = n / ranks, extra = n % ranks;
  return t.narrow(0, rank * base + std::min<int64_t>(rank, extra), base + (rank < extra ? 1 : 0));
}

// The Megatron/vLLM tensor-parallel shard of a Llama parameter for `rank` of `tp`.
inline at::Tensor ExpectedTpShard(const std::string& name, const at::Tensor& full, int rank, int tp,
                                  bool vocab_parallel = true) {
  for (const char* column : {"q_proj.weight", "k_proj.weight", "v_proj.weight", "gate_proj.weight", "up_proj.weight"})
    if (EndsWith(name, column)) return full.chunk(tp, 0)[size_t(rank)];
  for (const char* row : {"o_proj.weight", "down_proj.weight"})
    if (EndsWith(name, row)) return full.chunk(tp, 1)[size_t(rank)];
  if ((name == "model.embed_tokens.weight" || name == "lm_head.weight") && vocab_parallel)
    return NearEqualRows(full, rank, tp);
  return full;  // norms (and the vocab when replicated)
}

// The reference fp8 quantisation of a full parameter, independent of the weight-sync code: the
// kernel's per-row cast of the whole [rows, cols] weight (per tensor for 1-D parameters). data has the
// parameter's shape, scales are [rows] (or [1]).
inline kernels::Fp8Tensor ReferenceFp8(const at::Tensor& full) {
  kernels::Fp8Tensor q = full.dim() < 2
                             ? kernels::CastToFp8E4m3(full.reshape({-1, 1}), kernels::Fp8Scaling::kPerTensor)
                             : kernels::CastToFp8E4m3(full.reshape({full.size(0), -1}), kernels::Fp8Scaling::kPerRow);
  return {q.data.view(full.sizes()), q.scales};
}

// The scales of a tensor-parallel shard: those of the rows the shard holds (every row for a
// row-parallel split), cut like the data by spreading each row's scale over its row.
inline at::Tensor ExpectedTpScales(const std::string& name, const at::Tensor& full, const at::Tensor& scales,
                                   int rank, int tp, bool vocab_parallel = true) {
  if (full.dim() < 2) return scales;
  at::Tensor spread = scales.view({-1, 1}).expand({full.size(0), full.size(1)});
  return ExpectedTpShard(name, spread, rank, tp, vocab_parallel).select(1, 0).contiguous();
}

}  // namespace llamarl::testing
