#include "controller/rollout.h"

#include <algorithm>
#include <climits>
#include <cstring>

#include "core/check.h"

namespace llamarl::controller {
namespace {

constexpr uint32_t kMagic = 0x3147524C;        // "LRG1" read as little-endian bytes
constexpr uint32_t kMagicMasked = 0x3247524C;  // "LRG2": LRG1 with a loss mask per sample

// Appends fixed-width values. The host is little-endian on every platform LibTorch supports; the
// format is defined as little-endian so that a big-endian port would have to swap here.
class Writer {
 public:
  template <typename T>
  void Put(T value) {
    const auto* p = reinterpret_cast<const uint8_t*>(&value);
    bytes_.insert(bytes_.end(), p, p + sizeof(T));
  }
  template <typename T>
  void PutVec(const std::vector<T>& v) {
    Put<int64_t>(int64_t(v.size()));
    const auto* p = reinterpret_cast<const uint8_t*>(v.data());
    bytes_.insert(bytes_.end(), p, p + v.size() * sizeof(T));
  }
  void PutStr(const std::string& s) {
    Put<int64_t>(int64_t(s.size()));
    bytes_.insert(bytes_.end(), s.begin(), s.end());
  }
  std::vector<uint8_t> Release() { return std::move(bytes_); }

 private:
  std::vector<uint8_t> bytes_;
};

class Reader {
 public:
  Reader(const uint8_t* data, size_t size) : data_(data), size_(size) {}
  template <typename T>
  T Get(const char* what) {
    Need(sizeof(T), what);
    T value;
    std::memcpy(&value, data_ + pos_, sizeof(T));
    pos_ += sizeof(T);
    return value;
  }
  int64_t Count(const char* what, size_t element_size) {
    int64_t n = Get<int64_t>(what);
    LLAMARL_CHECK(n >= 0 && uint64_t(n) <= (size_ - pos_) / element_size, "rollout message: ", what,
                  " count ", n, " at byte ", pos_ - 8, " does not fit the ", size_, "-byte message");
    return n;
  }
  template <typename T>
  std::vector<T> GetVec(const char* what) {
    int64_t n = Count(what, sizeof(T));
    std::vector<T> v(static_cast<size_t>(n));
    std::memcpy(v.data(), data_ + pos_, size_t(n) * sizeof(T));
    pos_ += size_t(n) * sizeof(T);
    return v;
  }
  std::string GetStr(const char* what) {
    int64_t n = Count(what, 1);
    std::string s(reinterpret_cast<const char*>(data_ + pos_), size_t(n));
    pos_ += size_t(n);
    return s;
  }
  size_t pos() const { return pos_; }

 private:
  void Need(size_t n, const char* what) const {
    LLAMARL_CHECK(size_ - pos_ >= n, "rollout message: truncated at byte ", pos_, " of ", size_, " while reading ",
                  what);
  }
  const uint8_t* data_;
  size_t size_;
  size_t pos_ = 0;
};

}  // namespace

int64_t RolloutGroup::MinVersion() const {
  int64_t v = INT64_MAX;
  for (const auto& s : samples) {
    for (int64_t x : s.versions) v = std::min(v, x);
  }
  return v;
}

int64_t RolloutGroup::MaxVersion() const {
  int64_t v = -1;
  for (const auto& s : samples) {
    for (int64_t x : s.versions) v = std::max(v, x);
  }
  return v;
}

int64_t RolloutGroup::NumResponseTokens() const {
  int64_t n = 0;
  for (const auto& s : samples) n += int64_t(s.response.size());
  return n;
}

std::vector<uint8_t> EncodeRolloutGroup(const RolloutGroup& g) {
  Writer w;
  bool masked = false;  // single-turn groups keep the LRG1 bytes
  for (const auto& s : g.samples) masked |= !s.loss_mask.empty();
  w.Put<uint32_t>(masked ? kMagicMasked : kMagic);
  for (int64_t x : {g.step, g.group_id, g.prompt_id, g.generator_rank}) w.Put<int64_t>(x);
  w.Put<double>(g.gen_s);
  w.PutVec(g.prompt);
  w.Put<int64_t>(int64_t(g.samples.size()));
  for (const auto& s : g.samples) {
    LLAMARL_ASSERT(s.logprobs.size() == s.response.size() && s.versions.size() == s.response.size(),
                   "sample with ", s.response.size(), " tokens, ", s.logprobs.size(), " logprobs, ",
                   s.versions.size(), " versions");
    w.PutVec(s.response);
    w.PutVec(s.logprobs);
    w.PutVec(s.versions);
    w.Put<double>(s.reward);
    w.PutStr(s.finish_reason);
    if (masked) {
      LLAMARL_ASSERT(s.loss_mask.empty() || s.loss_mask.size() == s.response.size(), "sample with ",
                     s.response.size(), " tokens and a loss mask of ", s.loss_mask.size());
      w.PutVec(s.loss_mask);
      w.Put<int64_t>(s.turns);
      w.Put<double>(s.tool_s);
      w.Put<double>(s.tool_step_max_s);
    }
  }
  return w.Release();
}

RolloutGroup DecodeRolloutGroup(const uint8_t* data, size_t size) {
  Reader r(data, size);
  uint32_t magic = r.Get<uint32_t>("magic");
  LLAMARL_CHECK(magic == kMagic || magic == kMagicMasked, "rollout message: bad magic 0x", std::hex, magic,
                " (expected 0x", kMagic, " or 0x", kMagicMasked, "); the sender is not a llamarl generator of this version");
  const bool masked = magic == kMagicMasked;
  RolloutGroup g;
  g.step = r.Get<int64_t>("step");
  g.group_id = r.Get<int64_t>("group_id");
  g.prompt_id = r.Get<int64_t>("prompt_id");
  g.generator_rank = r.Get<int64_t>("generator_rank");
  g.gen_s = r.Get<double>("gen_s");
  g.prompt = r.GetVec<int64_t>("prompt");
  int64_t num_samples = r.Count("samples", 5 * sizeof(int64_t) + sizeof(double));
  g.samples.resize(size_t(num_samples));
  for (auto& s : g.samples) {
    s.response = r.GetVec<int64_t>("response");
    s.logprobs = r.GetVec<float>("logprobs");
    s.versions = r.GetVec<int64_t>("versions");
    LLAMARL_CHECK(s.logprobs.size() == s.response.size() && s.versions.size() == s.response.size(),
                  "rollout message: a sample has ", s.response.size(), " tokens but ", s.logprobs.size(),
                  " logprobs and ", s.versions.size(), " versions; each token needs one of each");
    s.reward = r.Get<double>("reward");
    s.finish_reason = r.GetStr("finish_reason");
    if (masked) {
      s.loss_mask = r.GetVec<uint8_t>("loss_mask");
      LLAMARL_CHECK(s.loss_mask.empty() || s.loss_mask.size() == s.response.size(), "rollout message: a sample has ",
                    s.response.size(), " tokens but a loss mask of ", s.loss_mask.size());
      s.turns = r.Get<int64_t>("turns");
      s.tool_s = r.Get<double>("tool_s");
      s.tool_step_max_s = r.Get<double>("tool_step_max_s");
    }
  }
  LLAMARL_CHECK(r.pos() == size, "rollout message: ", size - r.pos(), " trailing bytes after the last sample");
  return g;
}

RolloutBuffer::RolloutBuffer(int64_t max_policy_lag) : max_policy_lag_(max_policy_lag) {
  LLAMARL_CHECK(max_policy_lag >= 0, "max_policy_lag (", max_policy_lag, ") must be >= 0");
}

bool RolloutBuffer::Add(RolloutGroup group, int64_t trainer_version) {
  const bool within = group.NumResponseTokens() == 0 || group.MinVersion() >= trainer_version - max_policy_lag_;
  for (const auto& s : group.samples) {
    for (int64_t v : s.versions) {
      const int64_t staleness = std::max<int64_t>(0, trainer_version - v);
      staleness_sum_ += double(staleness);
      stats_.staleness_max = std::max(stats_.staleness_max, staleness);
      histogram_.Add(staleness);
    }
  }
  stats_.tokens += group.NumResponseTokens();
  ++stats_.groups;
  stats_.stale_groups += within ? 0 : 1;
  kept_.push_back(std::move(group));
  return within;
}

std::vector<RolloutGroup> RolloutBuffer::Take(StalenessStats* stats) {
  if (stats) {
    *stats = stats_;
    stats->staleness_mean = stats_.tokens > 0 ? staleness_sum_ / double(stats_.tokens) : 0.0;
  }
  std::vector<RolloutGroup> out = std::move(kept_);
  kept_.clear();
  stats_ = StalenessStats();
  staleness_sum_ = 0;
  return out;
}

}  // namespace llamarl::controller
