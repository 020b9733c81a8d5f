#include "trainer/packing.h"

#include "core/check.h"

#include <ATen/ATen.h>

namespace llamarl {
namespace {

int64_t InputLength(const TrainSample& s) { return int64_t(s.prompt.size() + s.response.size()) - 1; }

// Appends sample `index` to the micro-batch under construction.
void AppendSample(const TrainSample& s, int64_t index, std::vector<int64_t>& ids, std::vector<int64_t>& segments,
                  std::vector<int64_t>& positions, std::vector<int64_t>& targets, PackedMicroBatch& mb) {
  const int64_t start = int64_t(ids.size());
  ids.insert(ids.end(), s.prompt.begin(), s.prompt.end());
  ids.insert(ids.end(), s.response.begin(), s.response.end() - 1);
  segments.resize(ids.size(), index);
  const int64_t first = start + int64_t(s.prompt.size()) - 1;
  for (size_t j = 0; j < s.response.size(); ++j) {
    if (!s.Trains(j)) continue;  // in the input, but no target: no loss, no gradient
    positions.push_back(first + int64_t(j));
    targets.push_back(s.response[j]);
    mb.sample_index.push_back(index);
    mb.token_index.push_back(int64_t(j));
  }
}

at::Tensor LongTensor(const std::vector<int64_t>& v) {
  return at::tensor(v, at::TensorOptions().dtype(at::kLong));
}

// Where the micro-batch's tensors live (the host for one built by hand without them).
c10::Device DeviceOf(const PackedMicroBatch& batch) {
  return batch.targets.defined() ? batch.targets.device() : c10::Device(c10::kCPU);
}

}  // namespace

std::vector<PackedMicroBatch> PackSamples(const std::vector<TrainSample>& samples, int64_t max_tokens) {
  std::vector<int64_t> all(samples.size());
  for (size_t i = 0; i < all.size(); ++i) all[i] = int64_t(i);
  return PackSamples(samples, all, max_tokens);
}

std::vector<PackedMicroBatch> PackSamples(const std::vector<TrainSample>& samples, const std::vector<int64_t>& subset,
                                          int64_t max_tokens) {
  LLAMARL_CHECK(max_tokens >= 1, "micro_batch_tokens must be >= 1, got ", max_tokens);
  std::vector<PackedMicroBatch> out;
  PackedMicroBatch mb;
  std::vector<int64_t> ids, segments, positions, targets;
  auto flush = [&] {
    if (ids.empty()) return;
    mb.input_ids = LongTensor(ids).unsqueeze(0);
    mb.segment_ids = LongTensor(segments).unsqueeze(0);
    mb.positions = LongTensor(positions);
    mb.targets = LongTensor(targets);
    out.push_back(std::move(mb));
    mb = PackedMicroBatch();
    ids.clear(), segments.clear(), positions.clear(), targets.clear();
  };
  for (int64_t i : subset) {
    const TrainSample& s = samples.at(size_t(i));
    if (s.NumTrainedTokens() == 0) continue;
    LLAMARL_CHECK(!s.prompt.empty(), "train sample ", i, " (group ", s.group_id,
                  ") has an empty prompt; every sample needs at least one prompt token (e.g. BOS)");
    if (!ids.empty() && int64_t(ids.size()) + InputLength(s) > max_tokens) flush();
    AppendSample(s, i, ids, segments, positions, targets, mb);
  }
  flush();
  return out;
}

void MoveToDevice(std::vector<PackedMicroBatch>* micro, c10::Device device) {
  for (PackedMicroBatch& mb : *micro) {
    for (at::Tensor* t : {&mb.input_ids, &mb.segment_ids, &mb.positions, &mb.targets}) *t = t->to(device);
  }
}

PackedMicroBatch PaddingMicroBatch() {
  PackedMicroBatch mb;
  mb.input_ids = at::zeros({1, 1}, at::kLong);
  mb.segment_ids = at::zeros({1, 1}, at::kLong);
  mb.positions = at::zeros({1}, at::kLong);
  mb.targets = at::zeros({1}, at::kLong);
  mb.padding = true;
  return mb;
}

at::Tensor SegmentOfTokens(const PackedMicroBatch& batch) {
  std::vector<int64_t> segments(batch.sample_index.size());
  int64_t current = -1;
  for (size_t t = 0; t < segments.size(); ++t) {
    if (t == 0 || batch.sample_index[t] != batch.sample_index[t - 1]) ++current;
    segments[t] = current;
  }
  return LongTensor(segments).to(DeviceOf(batch));
}

at::Tensor GatherPerToken(const PackedMicroBatch& batch, const std::vector<std::vector<float>>& per_sample) {
  std::vector<float> values(batch.sample_index.size());
  for (size_t t = 0; t < values.size(); ++t)
    values[t] = per_sample.at(size_t(batch.sample_index[t])).at(size_t(batch.token_index[t]));
  return at::tensor(values, at::TensorOptions().dtype(at::kFloat)).to(DeviceOf(batch));
}

at::Tensor BroadcastPerSample(const PackedMicroBatch& batch, const std::vector<double>& per_sample) {
  std::vector<float> values(batch.sample_index.size());
  for (size_t t = 0; t < values.size(); ++t) values[t] = float(per_sample.at(size_t(batch.sample_index[t])));
  return at::tensor(values, at::TensorOptions().dtype(at::kFloat)).to(DeviceOf(batch));
}

}  // namespace llamarl
