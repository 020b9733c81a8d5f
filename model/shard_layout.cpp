#include "model/shard_layout.h"

#include "core/check.h"
#include "model/llama.h"

#include <sstream>

namespace llamarl {
namespace {

bool EndsWith(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

int64_t Product(const std::vector<int64_t>& shape, size_t from) {
  int64_t n = 1;
  for (size_t i = from; i < shape.size(); ++i) n *= shape[i];
  return n;
}

// The shape of a parameter's local shard holding rows x cols of its matrix view: dim 0 becomes
// `rows`; a column split of a 2-D weight keeps its two dimensions.
std::vector<int64_t> ShardShape(const ParamSpec& p, int64_t rows, int64_t cols) {
  if (p.shape.size() <= 1) return {rows * cols};
  if (cols == p.Cols()) {
    std::vector<int64_t> shape = p.shape;
    shape[0] = rows;
    return shape;
  }
  LLAMARL_ASSERT(p.shape.size() == 2, "column split of a ", p.shape.size(), "-D parameter ", p.name);
  return {rows, cols};
}

// Adds a buffer holding the rectangle of `param` as one contiguous shard.
void AddShard(ShardLayout& layout, int rank, int64_t param, int64_t r0, int64_t r1, int64_t c0, int64_t c1) {
  const ParamSpec& p = layout.params()[size_t(param)];
  int64_t buffer = layout.AddBuffer(rank, {p.name, ShardShape(p, r1 - r0, c1 - c0)});
  layout.AddRegion(rank, {param, r0, r1, c0, c1, buffer, 0, c1 - c0});
}

void CheckDivides(int tp, int64_t value, const char* what) {
  LLAMARL_CHECK(value % tp == 0, "generator.tp_size (", tp, ") must divide ", what, " (", value,
                "); pick a tp_size that divides it");
}

}  // namespace

int64_t ParamSpec::Rows() const { return shape.empty() ? 1 : shape[0]; }
int64_t ParamSpec::Cols() const { return Product(shape, 1); }
int64_t BufferSpec::Numel() const { return Product(shape, 0); }

std::vector<ParamSpec> LlamaParamSpecs(const LlamaConfig& config) {
  LlamaForCausalLM module(config, at::TensorOptions().device(at::kMeta).dtype(at::kFloat));
  std::vector<ParamSpec> specs;
  for (const auto& item : module->named_parameters()) {
    specs.push_back({item.key(), item.value().sizes().vec()});
  }
  return specs;
}

ShardLayout::ShardLayout(std::string kind, std::vector<ParamSpec> params, int num_ranks, at::ScalarType dtype)
    : kind_(std::move(kind)), params_(std::move(params)), dtype_(dtype) {
  LLAMARL_CHECK(num_ranks >= 1, kind_, " layout: num_ranks must be >= 1, got ", num_ranks);
  ranks_.resize(size_t(num_ranks));
}

const RankShards& ShardLayout::Rank(int rank) const {
  LLAMARL_CHECK(rank >= 0 && rank < NumRanks(), kind_, " layout: rank ", rank, " out of range [0, ", NumRanks(), ")");
  return ranks_[size_t(rank)];
}

int64_t ShardLayout::AddBuffer(int rank, BufferSpec buffer) {
  Rank(rank);
  for (int64_t d : buffer.shape)
    LLAMARL_CHECK(d >= 0, kind_, " layout: buffer '", buffer.name, "' has a negative dimension ", d);
  auto& buffers = ranks_[size_t(rank)].buffers;
  buffers.push_back(std::move(buffer));
  return int64_t(buffers.size()) - 1;
}

void ShardLayout::AddRegion(int rank, const Region& g) {
  Rank(rank);
  LLAMARL_CHECK(g.param >= 0 && g.param < int64_t(params_.size()), kind_, " layout: region of rank ", rank,
                " names parameter index ", g.param, ", expected [0, ", params_.size(), ")");
  const ParamSpec& p = params_[size_t(g.param)];
  LLAMARL_CHECK(0 <= g.row_begin && g.row_begin < g.row_end && g.row_end <= p.Rows() && 0 <= g.col_begin &&
                  g.col_begin < g.col_end && g.col_end <= p.Cols(),
                kind_, " layout: region rows [", g.row_begin, ", ", g.row_end, ") x cols [", g.col_begin, ", ",
                g.col_end, ") of rank ", rank, " is empty or outside '", p.name, "' viewed as [", p.Rows(), ", ",
                p.Cols(), "]");
  const auto& buffers = ranks_[size_t(rank)].buffers;
  LLAMARL_CHECK(g.buffer >= 0 && g.buffer < int64_t(buffers.size()), kind_, " layout: region of '", p.name,
                "' on rank ", rank, " names buffer ", g.buffer, " but the rank has ", buffers.size());
  const int64_t last = g.offset + (g.Rows() - 1) * g.stride + g.Cols();
  LLAMARL_CHECK(g.offset >= 0 && g.stride >= g.Cols() && last <= buffers[size_t(g.buffer)].Numel(), kind_,
                " layout: region of '", p.name, "' on rank ", rank, " (offset ", g.offset, ", stride ", g.stride,
                ", ", g.Rows(), "x", g.Cols(), ") does not fit buffer '", buffers[size_t(g.buffer)].name, "' of ",
                buffers[size_t(g.buffer)].Numel(), " elements");
  ranks_[size_t(rank)].regions.push_back(g);
}

int64_t ShardLayout::ParamIndex(const std::string& name) const {
  for (size_t i = 0; i < params_.size(); ++i)
    if (params_[i].name == name) return int64_t(i);
  std::string known;
  for (size_t i = 0; i < params_.size() && i < 4; ++i) known += (i ? ", " : "") + params_[i].name;
  LLAMARL_FAIL(kind_, " layout: unknown parameter '", name, "'; known: ", known,
               params_.size() > 4 ? ", ..." : "", " (", params_.size(), " in all)");
  return -1;  // unreachable: LLAMARL_CHECK(false) throws
}

int64_t ShardLayout::RankNumel(int rank) const {
  int64_t n = 0;
  for (const auto& b : Rank(rank).buffers) n += b.Numel();
  return n;
}

std::string ShardLayout::Fingerprint() const {
  std::ostringstream out;
  out << kind_ << '|' << c10::toString(dtype_) << '|' << ranks_.size();
  for (const auto& p : params_) {
    out << '|' << p.name;
    for (int64_t d : p.shape) out << ',' << d;
  }
  for (const auto& rank : ranks_) {
    out << "#";
    for (const auto& b : rank.buffers) out << b.Numel() << ';';
    for (const auto& g : rank.regions)
      out << g.param << ':' << g.row_begin << ',' << g.row_end << ',' << g.col_begin << ',' << g.col_end << ','
          << g.buffer << ',' << g.offset << ',' << g.stride << ';';
  }
  return out.str();
}

std::vector<int64_t> EvenSplit(int64_t total, int parts) {
  LLAMARL_CHECK(parts >= 1 && total >= 0, "EvenSplit: expected parts >= 1 and total >= 0, got parts ", parts,
                ", total ", total);
  std::vector<int64_t> bounds{0};
  for (int i = 0; i < parts; ++i) bounds.push_back(bounds.back() + total / parts + (i < total % parts ? 1 : 0));
  return bounds;
}

ShardLayout ZeroFlatLayout(const std::vector<ParamSpec>& params, int num_ranks, at::ScalarType dtype) {
  ShardLayout layout("zero_flat", params, num_ranks, dtype);
  int64_t total = 0;
  for (const auto& p : params) total += p.Numel();
  const std::vector<int64_t> bounds = EvenSplit(total, num_ranks);
  for (int rank = 0; rank < num_ranks; ++rank) {
    const int64_t lo = bounds[size_t(rank)], hi = bounds[size_t(rank) + 1];
    layout.AddBuffer(rank, {"flat_shard", {hi - lo}});
    int64_t start = 0;  // flat index of the current parameter's first element
    for (size_t i = 0; i < params.size(); start += params[i].Numel(), ++i) {
      const int64_t a = std::max(lo, start) - start, b = std::min(hi, start + params[i].Numel()) - start;
      if (a >= b) continue;
      const int64_t cols = params[i].Cols(), local = start + a - lo;  // local element of flat index a
      // Partial first row, full middle rows, partial last row: each a rectangle whose rows sit `cols`
      // apart in the flat shard.
      const int64_t r_a = a / cols, r_b = b / cols;
      auto add = [&](int64_t r0, int64_t r1, int64_t c0, int64_t c1) {
        if (r0 < r1 && c0 < c1)
          layout.AddRegion(rank, {int64_t(i), r0, r1, c0, c1, 0, local + (r0 * cols + c0) - a, cols});
      };
      if (r_a == r_b) {
        add(r_a, r_a + 1, a % cols, b % cols);
        continue;
      }
      int64_t full_begin = r_a;
      if (a % cols != 0) add(r_a, ++full_begin, a % cols, cols);
      add(full_begin, r_b, 0, cols);
      add(r_b, r_b + 1, 0, b % cols);
    }
  }
  return layout;
}

ShardLayout RowShardLayout(const std::vector<ParamSpec>& params, int num_ranks, at::ScalarType dtype) {
  ShardLayout layout("row_shard", params, num_ranks, dtype);
  for (size_t i = 0; i < params.size(); ++i) {
    const std::vector<int64_t> bounds = EvenSplit(params[i].Rows(), num_ranks);
    for (int rank = 0; rank < num_ranks; ++rank) {
      const int64_t r0 = bounds[size_t(rank)], r1 = bounds[size_t(rank) + 1];
      if (r0 < r1) AddShard(layout, rank, int64_t(i), r0, r1, 0, params[i].Cols());
    }
  }
  return layout;
}

ShardLayout TensorParallelLayout(const LlamaConfig& config, const TensorParallelOptions& options) {
  const int tp = options.tp_size;
  LLAMARL_CHECK(tp >= 1, "generator.tp_size must be >= 1, got ", tp);
  CheckDivides(tp, config.num_attention_heads, "num_attention_heads");
  CheckDivides(tp, config.num_key_value_heads, "num_key_value_heads");
  CheckDivides(tp, config.intermediate_size, "intermediate_size");
  ShardLayout layout("tensor_parallel" + std::string(options.vocab_parallel ? "" : "_replicated_vocab"),
                     LlamaParamSpecs(config), tp, options.dtype);
  const auto& params = layout.params();
  for (size_t i = 0; i < params.size(); ++i) {
    const ParamSpec& p = params[i];
    const std::string& n = p.name;
    const bool column = EndsWith(n, "q_proj.weight") || EndsWith(n, "k_proj.weight") ||
                        EndsWith(n, "v_proj.weight") || EndsWith(n, "q_proj.bias") || EndsWith(n, "k_proj.bias") ||
                        EndsWith(n, "v_proj.bias") || EndsWith(n, "gate_proj.weight") ||
                        EndsWith(n, "up_proj.weight");
    const bool row = EndsWith(n, "o_proj.weight") || EndsWith(n, "down_proj.weight");
    const bool vocab = n == "model.embed_tokens.weight" || n == "lm_head.weight";
    const bool replicated = EndsWith(n, "norm.weight") || (vocab && !options.vocab_parallel);
    LLAMARL_CHECK(column || row || vocab || replicated, "tensor-parallel layout: no rule for parameter '", n,
                  "'; known suffixes: q/k/v/gate/up_proj (column), o/down_proj (row), norm (replicated), "
                  "embed_tokens/lm_head (vocab)");
    for (int r = 0; r < tp; ++r) {
      if (replicated) {
        AddShard(layout, r, int64_t(i), 0, p.Rows(), 0, p.Cols());
      } else if (row) {
        // Divisibility of heads * head_dim and intermediate_size was checked above.
        const int64_t width = p.Cols() / tp;
        AddShard(layout, r, int64_t(i), 0, p.Rows(), r * width, (r + 1) * width);
      } else {
        // Column-parallel q/k/v split whole heads because tp divides the (kv) head counts.
        const std::vector<int64_t> bounds = EvenSplit(p.Rows(), tp);
        if (bounds[size_t(r)] < bounds[size_t(r) + 1])
          AddShard(layout, r, int64_t(i), bounds[size_t(r)], bounds[size_t(r) + 1], 0, p.Cols());
      }
    }
  }
  return layout;
}

}  // namespace llamarl
