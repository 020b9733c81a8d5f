#include "weight_sync/ddma.h"

#include "core/check.h"
#include "weight_sync/fp8_scales.h"

#include <ATen/ATen.h>

#include <algorithm>
#include <set>

namespace llamarl {
namespace {

// Tags of the weight-sync traffic; below 32767 (the least MPI_TAG_UB MPI guarantees).
constexpr int kDataTag = 0x5700;
constexpr int kChecksumTag = 0x5701;
constexpr int kScaleTag = 0x5704;

// One remote pair this rank takes part in, and where each block starts in the pair's stream.
struct Stream {
  const PairPlan* pair = nullptr;
  int peer = 0;       // communicator rank of the other end
  bool send = false;  // this rank is the pair's source
  std::vector<int64_t> block_starts;
  int64_t NumRounds(int64_t bucket) const { return (pair->numel + bucket - 1) / bucket; }
};

// A strided [rows, cols] view of a flat buffer.
at::Tensor View(const at::Tensor& flat, int64_t offset, int64_t rows, int64_t cols, int64_t stride) {
  return flat.as_strided({rows, cols}, {stride, 1}, flat.storage_offset() + offset);
}

// Calls f(block, row, rows, col, cols, stream_pos) for the rectangles that make up elements
// [begin, end) of a pair's stream (per block: a partial first row, full rows, a partial last row).
template <typename F>
void ForEachPiece(const Stream& s, int64_t begin, int64_t end, F&& f) {
  const auto& blocks = s.pair->blocks;
  size_t i = size_t(std::upper_bound(s.block_starts.begin(), s.block_starts.end(), begin) - s.block_starts.begin()) - 1;
  for (; i < blocks.size() && s.block_starts[i] < end; ++i) {
    const TransferBlock& b = blocks[i];
    int64_t lo = std::max(begin, s.block_starts[i]) - s.block_starts[i];
    const int64_t hi = std::min(end, s.block_starts[i] + b.Numel()) - s.block_starts[i];
    while (lo < hi) {
      const int64_t row = lo / b.cols, col = lo % b.cols;
      int64_t rows = 1, cols = std::min(b.cols - col, hi - lo);
      if (col == 0 && hi - lo >= b.cols) {
        rows = (hi - lo) / b.cols;
        cols = b.cols;
      }
      f(b, row, rows, col, cols, s.block_starts[i] + lo);
      lo += rows * cols;
    }
  }
}

at::Tensor SrcPiece(const std::vector<at::Tensor>& bufs, const TransferBlock& b, int64_t row, int64_t rows,
                    int64_t col, int64_t cols) {
  return View(bufs[size_t(b.src_buffer)], b.src_offset + row * b.src_stride + col, rows, cols, b.src_stride);
}

at::Tensor DstPiece(const std::vector<at::Tensor>& bufs, const TransferBlock& b, int64_t row, int64_t rows,
                    int64_t col, int64_t cols) {
  return View(bufs[size_t(b.dst_buffer)], b.dst_offset + row * b.dst_stride + col, rows, cols, b.dst_stride);
}

void CheckBuffers(const ShardLayout& layout, int rank, const std::vector<at::Tensor>& bufs, const char* side) {
  const auto& specs = layout.Rank(rank).buffers;
  LLAMARL_CHECK(bufs.size() == specs.size(), "weight sync: ", side, " rank ", rank, " of layout ", layout.kind(),
                " expects ", specs.size(), " buffers, got ", bufs.size(), "; allocate them with AllocateBuffers");
  for (size_t i = 0; i < bufs.size(); ++i) {
    const at::Tensor& t = bufs[i];
    LLAMARL_CHECK(t.defined() && t.is_contiguous() && t.numel() == specs[i].Numel() &&
                    t.scalar_type() == layout.dtype(),
                  "weight sync: ", side, " buffer ", i, " ('", specs[i].name, "') of rank ", rank, " must be a contiguous ",
                  layout.dtype(), " tensor of ", specs[i].Numel(), " elements, got ",
                  t.defined() ? c10::toString(t.scalar_type()) : "undefined", " with ", t.defined() ? t.numel() : 0,
                  " elements", t.defined() && !t.is_contiguous() ? " (not contiguous)" : "");
  }
}

// 63 bits of FNV-1a over the bytes (fits the int64 message); hashed on the host.
int64_t Hash(const at::Tensor& wire) {
  at::Tensor host = wire.device().is_cpu() ? wire : wire.cpu();
  return int64_t(Fnv1a64(host.data_ptr(), host.nbytes()) >> 1);
}

class Executor {
 public:
  Executor(Communicator& comm, const TransferPlan& plan, const TransferPlacement& placement, TransferBuffers& buffers,
           const TransferOptions& options)
      : comm_(comm), plan_(plan), placement_(placement), buffers_(buffers), options_(options) {
    const int me = comm.Rank();
    my_src_ = LayoutRankOf(placement.src_ranks, me);
    my_dst_ = LayoutRankOf(placement.dst_ranks, me);
    if (my_src_ >= 0) CheckBuffers(plan.src(), my_src_, buffers.src, "source");
    if (my_dst_ >= 0) CheckBuffers(plan.dst(), my_dst_, buffers.dst, "destination");
    fp8_ = plan.encoding() == TransferEncoding::kFp8E4m3;
    if (my_dst_ >= 0 && fp8_) CheckScaleBuffers(plan, my_dst_, buffers.dst_scales);
    for (auto& t : buffers_.src) src_flat_.push_back(t.view(-1));
    for (auto& t : buffers_.dst) dst_flat_.push_back(t.view(-1));
    // Staging lives where the weights live (CPU for mpi, the GPU for nccl).
    if (!buffers.src.empty()) device_ = buffers.src[0].device();
    else if (!buffers.dst.empty()) device_ = buffers.dst[0].device();
    const int64_t elem = int64_t(c10::elementSize(plan.dst().dtype()));
    LLAMARL_CHECK(options.bucket_bytes >= elem, "weight sync: bucket_bytes (", options.bucket_bytes,
                  ") must hold at least one element of ", plan.dst().dtype(), " (", elem, " bytes)");
    bucket_ = options.bucket_bytes / elem;
    for (const auto& pair : plan.pairs()) {
      const int src = placement.src_ranks[size_t(pair.src_rank)], dst = placement.dst_ranks[size_t(pair.dst_rank)];
      if (src == me && dst == me) local_.push_back(&pair);
      else if (src == me || dst == me) AddStream(pair, src == me, src == me ? dst : src);
    }
  }

  // Round k uses slot k % 2 of the staging.
  void Run(TransferStaging& staging) {
    int64_t rounds = 0;
    for (const auto& s : streams_) rounds = std::max(rounds, s.NumRounds(bucket_));
    PrepareStaging(staging);
    if (fp8_) SendScales();
    WorkPtr in_flight;
    if (rounds > 0) {
      Pack(0, staging, 0);
      in_flight = Post(0, staging, 0);
    }
    CopyLocal();  // overlaps with round 0
    for (int64_t k = 0; k < rounds; ++k) {
      if (k + 1 < rounds) Pack(k + 1, staging, (k + 1) % 2);
      in_flight->Wait(options_.timeout);
      Verify(k, staging, k % 2);
      if (k + 1 < rounds) in_flight = Post(k + 1, staging, (k + 1) % 2);
      Unpack(k, staging, k % 2);
    }
  }

 private:
  void AddStream(const PairPlan& pair, bool send, int peer) {
    Stream s{&pair, peer, send, {}};
    int64_t at = 0;
    for (const auto& b : pair.blocks) {
      s.block_starts.push_back(at);
      at += b.Numel();
    }
    streams_.push_back(std::move(s));
  }

  std::pair<int64_t, int64_t> Chunk(const Stream& s, int64_t round) const {
    const int64_t begin = round * bucket_;
    return {begin, std::min(begin + bucket_, s.pair->numel)};
  }

  // Keeps the staging when it was sized for this very transfer (same plan, placement, rank, bucket and
  // device: then the streams and their sizes are the same too); otherwise allocates it afresh.
  void PrepareStaging(TransferStaging& staging) const {
    std::string key = std::to_string(plan_.Id()) + "/" + std::to_string(comm_.Rank()) + "/" + std::to_string(bucket_) +
                      "/" + device_.str() + "/";
    for (const auto* ranks : {&placement_.src_ranks, &placement_.dst_ranks})
      for (int r : *ranks) key += std::to_string(r) + (ranks == &placement_.src_ranks ? "," : ";");
    if (staging.key == key) return;
    staging.key = key;
    const auto wire_options = at::TensorOptions().dtype(plan_.dst().dtype()).device(device_);
    for (int slot = 0; slot < 2; ++slot) {
      staging.wire[slot].clear();
      staging.checksum[slot].clear();
      for (const Stream& s : streams_) {
        staging.wire[slot].push_back(at::empty({std::min(bucket_, s.pair->numel)}, wire_options));
        staging.checksum[slot].push_back(at::zeros({1}, wire_options.dtype(at::kLong)));
      }
    }
  }

  void Pack(int64_t round, TransferStaging& staging, int slot) {
    for (size_t i = 0; i < streams_.size(); ++i) {
      const Stream& s = streams_[i];
      const std::pair<int64_t, int64_t> range = Chunk(s, round);
      const int64_t begin = range.first, end = range.second;
      if (begin >= end) continue;
      if (!s.send) continue;
      at::Tensor wire = staging.wire[slot][i].narrow(0, 0, end - begin);
      ForEachPiece(s, begin, end, [&](const TransferBlock& b, int64_t row, int64_t rows, int64_t col, int64_t cols,
                                      int64_t pos) {
        wire.narrow(0, pos - begin, rows * cols).view({rows, cols}).copy_(Encoded(b, row, rows, col, cols));
      });
      if (options_.checksum) staging.checksum[slot][i].fill_(Hash(wire));
    }
  }

  WorkPtr Post(int64_t round, TransferStaging& staging, int slot) {
    std::vector<P2POp> ops;
    for (size_t i = 0; i < streams_.size(); ++i) {
      const Stream& s = streams_[i];
      const std::pair<int64_t, int64_t> range = Chunk(s, round);
      const int64_t begin = range.first, end = range.second;
      if (begin >= end) continue;
      at::Tensor wire = staging.wire[slot][i].narrow(0, 0, end - begin);
      const auto kind = s.send ? P2POp::Kind::kSend : P2POp::Kind::kRecv;
      ops.push_back({kind, wire, s.peer, kDataTag});
      if (options_.checksum) ops.push_back({kind, staging.checksum[slot][i], s.peer, kChecksumTag});
    }
    return comm_.SendRecvBatch(ops);
  }

  void Verify(int64_t round, TransferStaging& staging, int slot) {
    if (!options_.checksum) return;
    for (size_t i = 0; i < streams_.size(); ++i) {
      const Stream& s = streams_[i];
      const std::pair<int64_t, int64_t> range = Chunk(s, round);
      const int64_t begin = range.first, end = range.second;
      if (s.send || begin >= end) continue;
      at::Tensor wire = staging.wire[slot][i].narrow(0, 0, end - begin);
      const int64_t got = Hash(wire);
      const int64_t sent = staging.checksum[slot][i].item<int64_t>();
      LLAMARL_CHECK(got == sent, "weight sync checksum mismatch: bucket ", round, " from source rank ",
                    s.pair->src_rank, " (communicator rank ", s.peer, ") to destination rank ", s.pair->dst_rank,
                    ": sent ", sent, ", received bytes hash to ", got, "; the transport corrupted data");
    }
  }

  void Unpack(int64_t round, TransferStaging& staging, int slot) {
    for (size_t i = 0; i < streams_.size(); ++i) {
      const Stream& s = streams_[i];
      const std::pair<int64_t, int64_t> range = Chunk(s, round);
      const int64_t begin = range.first, end = range.second;
      if (s.send || begin >= end) continue;
      at::Tensor wire = staging.wire[slot][i].narrow(0, 0, end - begin);
      ForEachPiece(s, begin, end, [&](const TransferBlock& b, int64_t row, int64_t rows, int64_t col, int64_t cols,
                                      int64_t pos) {
        DstPiece(dst_flat_, b, row, rows, col, cols).copy_(wire.narrow(0, pos - begin, rows * cols).view({rows, cols}));
      });
    }
  }

  // The source piece as the wire carries it: cast by copy_ (plain) or encoded to e4m3 (fp8).
  at::Tensor Encoded(const TransferBlock& b, int64_t row, int64_t rows, int64_t col, int64_t cols) const {
    at::Tensor piece = SrcPiece(src_flat_, b, row, rows, col, cols);
    if (!fp8_) return piece;
    return EncodePiece(piece, plan_.src().params()[size_t(b.param)], scales_[size_t(b.param)], b.row_begin + row);
  }

  void CopyLocal() {
    for (const PairPlan* pair : local_) {
      for (const auto& b : pair->blocks) DstPiece(dst_flat_, b, 0, b.rows, 0, b.cols).copy_(Encoded(b, 0, b.rows, 0, b.cols));
      if (fp8_) UnpackScales(plan_, *pair, PackScales(plan_, *pair, scales_), buffers_.dst_scales);
    }
  }

  // fp8: the source ranks agree on the scales, then every remote pair's scales move in one message
  // (a few KiB: one float per row) before the buckets, which are encoded with them.
  void SendScales() {
    if (my_src_ >= 0)
      scales_ = ComputeSourceScales({&comm_, &plan_, &placement_.src_ranks, my_src_, &src_flat_, options_.timeout});
    std::vector<P2POp> ops;
    std::vector<std::pair<const PairPlan*, at::Tensor>> received;
    for (const Stream& s : streams_) {
      if (s.pair->num_scales == 0) continue;
      if (s.send) {
        ops.push_back(P2POp::Send(PackScales(plan_, *s.pair, scales_).to(device_), s.peer, kScaleTag));
      } else {
        received.push_back({s.pair, at::empty({s.pair->num_scales}, at::TensorOptions().device(device_))});
        ops.push_back(P2POp::Recv(received.back().second, s.peer, kScaleTag));
      }
    }
    if (!ops.empty()) comm_.SendRecvBatch(ops)->Wait(options_.timeout);
    for (const auto& [pair, wire] : received) UnpackScales(plan_, *pair, wire, buffers_.dst_scales);
  }

  Communicator& comm_;
  const TransferPlan& plan_;
  const TransferPlacement& placement_;
  TransferBuffers& buffers_;
  TransferOptions options_;
  int my_src_ = -1, my_dst_ = -1;
  bool fp8_ = false;
  std::vector<at::Tensor> scales_;  // fp8 sources: per parameter, the scales of the groups held
  int64_t bucket_ = 0;  // elements per bucket
  at::Device device_ = at::Device(at::kCPU);
  std::vector<at::Tensor> src_flat_, dst_flat_;
  std::vector<Stream> streams_;
  std::vector<const PairPlan*> local_;
};

}  // namespace

TransferPlacement TransferPlacement::Split(int world_size, int num_generators) {
  LLAMARL_CHECK(num_generators >= 1 && num_generators < world_size, "split placement: num_generators (",
                num_generators, ") must lie in [1, world size ", world_size, "); the rest of the ranks train");
  TransferPlacement p;
  for (int r = 0; r < world_size; ++r) (r < num_generators ? p.dst_ranks : p.src_ranks).push_back(r);
  return p;
}

TransferPlacement TransferPlacement::Colocated(int world_size) {
  TransferPlacement p;
  for (int r = 0; r < world_size; ++r) {
    p.src_ranks.push_back(r);
    p.dst_ranks.push_back(r);
  }
  return p;
}

int LayoutRankOf(const std::vector<int>& ranks, int comm_rank) {
  auto it = std::find(ranks.begin(), ranks.end(), comm_rank);
  return it == ranks.end() ? -1 : int(it - ranks.begin());
}

void CheckPlacement(const TransferPlan& plan, const TransferPlacement& placement, const Communicator& comm) {
  auto check = [&](const std::vector<int>& ranks, const ShardLayout& layout, const char* side) {
    LLAMARL_CHECK(int(ranks.size()) == layout.NumRanks(), "weight sync placement: ", ranks.size(), " ", side,
                  " ranks given but the ", side, " layout (", layout.kind(), ") has ", layout.NumRanks());
    std::set<int> seen;
    for (int r : ranks) {
      LLAMARL_CHECK(r >= 0 && r < comm.Size(), "weight sync placement: ", side, " rank ", r,
                    " is outside the communicator of ", comm.Size(), " ranks");
      LLAMARL_CHECK(seen.insert(r).second, "weight sync placement: communicator rank ", r, " appears twice among the ",
                    side, " ranks; each layout rank needs its own communicator rank");
    }
  };
  check(placement.src_ranks, plan.src(), "source");
  check(placement.dst_ranks, plan.dst(), "destination");
}

void ExecuteTransfer(Communicator& comm, const TransferPlan& plan, const TransferPlacement& placement,
                     TransferBuffers& buffers, const TransferOptions& options) {
  CheckPlacement(plan, placement, comm);
  TransferStaging once;
  Executor(comm, plan, placement, buffers, options).Run(options.staging ? *options.staging : once);
}

std::vector<at::Tensor> AllocateBuffers(const ShardLayout& layout, int rank, const at::TensorOptions& options) {
  std::vector<at::Tensor> out;
  for (const auto& b : layout.Rank(rank).buffers) out.push_back(at::zeros(b.shape, options.dtype(layout.dtype())));
  return out;
}

}  // namespace llamarl
