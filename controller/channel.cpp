#include "controller/channel.h"

#include <ATen/ATen.h>

#include <cstring>
#include <thread>

#include "core/check.h"

namespace llamarl::controller {
namespace {

at::Tensor BytesTensor(std::vector<uint8_t> bytes) {
  at::Tensor t = at::empty({int64_t(bytes.size())}, at::kByte);
  if (!bytes.empty()) std::memcpy(t.data_ptr(), bytes.data(), bytes.size());
  return t;
}

std::vector<uint8_t> TensorBytes(const at::Tensor& t) {
  const auto* p = t.data_ptr<uint8_t>();
  return std::vector<uint8_t>(p, p + t.numel());
}

void WaitNamed(Communicator& comm, Work& work, std::chrono::milliseconds timeout, int peer,
               const std::string& what) {
  try {
    work.Wait(timeout);
  } catch (const CommTimeoutError& e) {
    throw CommTimeoutError("rank " + std::to_string(comm.Rank()) + " timed out waiting for " + what +
                           " (peer rank " + std::to_string(peer) + "): " + e.what());
  }
}

const char* const kKindNames[] = {"start", "weights", "admit", "route", "eval", "stop", "save"};
constexpr int kNumKinds = int(sizeof(kKindNames) / sizeof(kKindNames[0]));

}  // namespace

std::chrono::milliseconds Seconds(double s) {
  return std::chrono::milliseconds(int64_t(s * 1000.0));
}

bool PendingSend::IsCompleted() {
  for (auto& w : works_) {
    if (!w->IsCompleted()) return false;
  }
  return true;
}

void PendingSend::Wait(std::chrono::milliseconds timeout, const std::string& what) {
  try {
    WaitAll(works_, timeout);
  } catch (const CommTimeoutError& e) {
    throw CommTimeoutError("timed out sending " + what + ": " + e.what());
  }
}

PendingSend SendBytes(Communicator& comm, std::vector<uint8_t> bytes, int dst, int tag) {
  PendingSend s;
  s.header_ = at::full({1}, int64_t(bytes.size()), at::kLong);
  s.works_.push_back(comm.Send(s.header_, dst, {tag}));
  if (!bytes.empty()) {
    s.payload_ = BytesTensor(std::move(bytes));
    s.works_.push_back(comm.Send(s.payload_, dst, {tag}));
  }
  return s;
}

std::vector<uint8_t> RecvBytes(Communicator& comm, int src, int tag, std::chrono::milliseconds timeout,
                               const std::string& what) {
  at::Tensor header = at::empty({1}, at::kLong);
  WaitNamed(comm, *comm.Recv(header, src, {tag}), timeout, src, what);
  const int64_t n = header.item<int64_t>();
  LLAMARL_CHECK(n >= 0, "rank ", comm.Rank(), ": message from rank ", src, " announces ", n, " bytes");
  if (n == 0) return {};
  at::Tensor payload = at::empty({n}, at::kByte);
  WaitNamed(comm, *comm.Recv(payload, src, {tag}), timeout, src, what);
  return TensorBytes(payload);
}

MessagePoller::MessagePoller(Communicator& comm, int src, int tag) : comm_(comm), src_(src), tag_(tag) {}

void MessagePoller::PostHeader() {
  header_ = at::empty({1}, at::kLong);
  header_work_ = comm_.Recv(header_, src_, {tag_});
}

std::optional<std::vector<uint8_t>> MessagePoller::Poll() {
  if (!payload_work_) {
    if (!header_work_) PostHeader();
    if (!header_work_->IsCompleted()) return std::nullopt;
    header_work_->Wait();  // rethrows a failed receive
    header_work_.reset();
    const int64_t n = header_.item<int64_t>();
    LLAMARL_CHECK(n >= 0, "rank ", comm_.Rank(), ": message from rank ", src_, " announces ", n, " bytes");
    if (n == 0) return std::vector<uint8_t>();
    payload_ = at::empty({n}, at::kByte);
    payload_work_ = comm_.Recv(payload_, src_, {tag_});
  }
  if (!payload_work_->IsCompleted()) return std::nullopt;
  payload_work_->Wait();
  payload_work_.reset();
  return TensorBytes(payload_);
}

std::vector<uint8_t> MessagePoller::Wait(std::chrono::milliseconds timeout, const std::string& what) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  for (;;) {
    if (auto m = Poll()) return std::move(*m);
    if (std::chrono::steady_clock::now() >= deadline) {
      throw CommTimeoutError("rank " + std::to_string(comm_.Rank()) + " timed out after " +
                             std::to_string(timeout.count() / 1000.0) + " s waiting for " + what +
                             " from rank " + std::to_string(src_));
    }
    // A short sleep keeps an idle rank from spinning a core that a busy rank needs.
    std::this_thread::sleep_for(std::chrono::microseconds(200));
  }
}

Json BroadcastJson(Communicator& comm, const Json& value, std::chrono::milliseconds timeout, int root) {
  if (comm.Size() == 1) return value;
  const std::string text = comm.Rank() == root ? value.dump() : std::string();
  at::Tensor size = at::full({1}, int64_t(text.size()), at::kLong);
  comm.Broadcast(size, {root})->Wait(timeout);
  at::Tensor payload = comm.Rank() == root ? BytesTensor(std::vector<uint8_t>(text.begin(), text.end()))
                                           : at::empty({size.item<int64_t>()}, at::kByte);
  comm.Broadcast(payload, {root})->Wait(timeout);
  const auto* p = payload.data_ptr<uint8_t>();
  return Json::parse(p, p + payload.numel());
}

const char* CommandKindName(Command::Kind kind) {
  return kKindNames[int(kind)];
}

std::vector<uint8_t> Command::Encode() const {
  Json j = {{"kind", CommandKindName(kind)}, {"step", step}, {"version", version}, {"payload", payload}};
  std::string text = j.dump();
  return std::vector<uint8_t>(text.begin(), text.end());
}

Command Command::Decode(const std::vector<uint8_t>& bytes) {
  Json j = Json::parse(bytes.begin(), bytes.end(), nullptr, /*allow_exceptions=*/false);
  LLAMARL_CHECK(j.is_object() && j.contains("kind"), "controller command: not a command object: ",
                DescribeJson(j));
  Command c;
  const std::string kind = j["kind"].get<std::string>();
  bool known = false;
  for (int k = 0; k < kNumKinds; ++k) {
    if (kind == kKindNames[k]) c.kind = Command::Kind(k), known = true;
  }
  LLAMARL_CHECK(known, "controller command: unknown kind '", kind,
                "'; known: start, weights, admit, route, eval, stop, save");
  c.step = j.value("step", int64_t(0));
  c.version = j.value("version", int64_t(0));
  c.payload = j.value("payload", Json());
  return c;
}

}  // namespace llamarl::controller
