// Sequence packing: the variable-length rollouts of a rank are packed back to back into micro-batches
// of at most `max_tokens` input tokens, one row each ([1, L]) with segment_ids so that attention stays
// inside each sequence and positions restart per sequence (LlamaInputs). A sequence longer than the
// budget gets a micro-batch of its own. A sample contributes prompt + response[:-1] as input; the
// hidden state at input position p predicts input p + 1, so response token j of a sample whose input
// starts at s is predicted at s + |prompt| - 1 + j.
#pragma once

#include "trainer/train_batch.h"

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <vector>

namespace llamarl {

struct PackedMicroBatch {
  at::Tensor input_ids;    // [1, L] int64
  at::Tensor segment_ids;  // [1, L] int64, the sample's index in the batch
  at::Tensor positions;    // [N] int64: input position whose hidden state predicts each response token
  at::Tensor targets;      // [N] int64: the response tokens
  std::vector<int64_t> sample_index;  // [N] sample of each token (index into TrainBatch::samples)
  std::vector<int64_t> token_index;   // [N] index of each token within its response
  bool padding = false;  // an empty micro-batch (one dummy token, no samples), see PaddingMicroBatch
  int64_t NumTokens() const { return int64_t(sample_index.size()); }
};

// A micro-batch of one token 0 predicting token 0 that belongs to no sample: ranks with fewer
// micro-batches run these (with zero loss) so that per-layer collectives line up across ranks.
PackedMicroBatch PaddingMicroBatch();

// Moves each micro-batch's tensors to `device` (nothing on the host); the per-token tensors made
// from a micro-batch below then live there too.
void MoveToDevice(std::vector<PackedMicroBatch>* micro, c10::Device device);

// Response tokens outside a sample's loss_mask are input only (no target). Samples with no trained
// response token are left out; a non-empty response after an empty prompt is an
// error naming the sample.
std::vector<PackedMicroBatch> PackSamples(const std::vector<TrainSample>& samples, int64_t max_tokens);
// The same over the samples listed in `subset` (indices into `samples`, in the order given); sample_index
// still refers to `samples`.
std::vector<PackedMicroBatch> PackSamples(const std::vector<TrainSample>& samples, const std::vector<int64_t>& subset,
                                          int64_t max_tokens);

// On the micro-batch's device:
// [N] int64: the samples of the micro-batch numbered 0..S-1 in order of appearance (each sample's tokens
// are contiguous), for per-sequence reductions (SegmentMeanPerToken).
at::Tensor SegmentOfTokens(const PackedMicroBatch& batch);

// [N] float32 tensor of per_sample[sample_index[t]][token_index[t]].
at::Tensor GatherPerToken(const PackedMicroBatch& batch, const std::vector<std::vector<float>>& per_sample);
// [N] float32 tensor of per_sample[sample_index[t]].
at::Tensor BroadcastPerSample(const PackedMicroBatch& batch, const std::vector<double>& per_sample);

}  // namespace llamarl
