// Messages between the ranks of a training job, over the world Communicator, on tags of their own:
//   kCommandTag   controller (first trainer rank) -> generator replica leaders: small JSON commands
//                 (start, weights, admit, route, eval, stop), see Command;
//   kRolloutTag   generator -> trainer ranks: encoded RolloutGroups (controller/rollout.h), directly,
//                 never through the controller;
//   kReportTag    generator replica leader -> controller: JSON reports (a finished group is ready,
//                 evaluation results, the final summary), told apart by their "kind";
//   kCheckpointTag finished groups waiting for the trainer, as encoded RolloutGroups: replica
//                 leader -> controller when a deterministic run saves them into a checkpoint ("save"),
//                 controller -> replica leader when a resumed run gives them back ("start").
// Each message is two point-to-point sends on its tag: an int64 byte count, then the uint8 payload
// (omitted when empty). Messages between a pair of ranks on one tag arrive in order (core/communicator.h),
// so the header always precedes its payload.
//
// Every blocking wait takes a timeout; an expired wait throws CommTimeoutError whose message names the
// local rank, the peer and `what` the rank was waiting for (the job's phase).
//
// Not thread-safe: use from the rank's one communication thread.
#pragma once

#include <ATen/core/Tensor.h>

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "core/communicator.h"
#include "core/config.h"

namespace llamarl::controller {

// Below 0x5700, where weight_sync's tags start, and below MPI's guaranteed tag bound (32767).
constexpr int kCommandTag = 0x4300;
constexpr int kRolloutTag = 0x4301;
constexpr int kReportTag = 0x4302;
constexpr int kCheckpointTag = 0x4303;

// A message in flight. Keeps its tensors alive until the sends complete.
class PendingSend {
 public:
  bool IsCompleted();
  void Wait(std::chrono::milliseconds timeout, const std::string& what);

 private:
  friend PendingSend SendBytes(Communicator&, std::vector<uint8_t>, int, int);
  at::Tensor header_, payload_;
  std::vector<WorkPtr> works_;
};

PendingSend SendBytes(Communicator& comm, std::vector<uint8_t> bytes, int dst, int tag);

// Blocks for the next message from `src` on `tag`.
std::vector<uint8_t> RecvBytes(Communicator& comm, int src, int tag, std::chrono::milliseconds timeout,
                               const std::string& what);

// Non-blocking receipt of a stream of messages from one peer: Poll() never blocks and returns a
// message once both of its parts arrived. A receive is posted by Poll() and stays posted until its
// message arrives, so an owner that stops polling right after the last message of a protocol (stop,
// summary) leaves nothing posted that a later job on the same communicator could match.
class MessagePoller {
 public:
  MessagePoller(Communicator& comm, int src, int tag);
  std::optional<std::vector<uint8_t>> Poll();
  // Blocks until the next message (Poll with a deadline).
  std::vector<uint8_t> Wait(std::chrono::milliseconds timeout, const std::string& what);

 private:
  void PostHeader();
  Communicator& comm_;
  int src_, tag_;
  at::Tensor header_, payload_;
  WorkPtr header_work_, payload_work_;
};

// Collective over `comm`: `root`'s JSON value on every rank (size, then the text).
Json BroadcastJson(Communicator& comm, const Json& value, std::chrono::milliseconds timeout, int root = 0);

// A controller command. Encoded as JSON text: commands are small and rare (one per step at most).
struct Command {
  // kAdmit: start these groups ({"groups": [admission index, ...]}); kRoute: send these finished
  // groups to these trainer ranks, in this order, and forget the dropped ones ({"send": [[group id,
  // world rank], ...], "drop": [group id, ...]}). See controller/batch_planner.h. kSave: send a copy
  // of these finished groups to the controller on kCheckpointTag, in this order ({"groups": [id, ...]}).
  // kStart's payload may hold {"restored": n}: n groups follow on kCheckpointTag, to be held as finished.
  enum class Kind { kStart, kWeights, kAdmit, kRoute, kEval, kStop, kSave };
  Kind kind = Kind::kStop;
  int64_t step = 0;     // the RL step the command belongs to
  int64_t version = 0;  // kWeights: the version being pushed; kEval: the version evaluated
  Json payload;         // kStart: the run state (dataset cursor, first step); kAdmit, kRoute: above

  std::vector<uint8_t> Encode() const;
  static Command Decode(const std::vector<uint8_t>& bytes);
};
const char* CommandKindName(Command::Kind kind);

std::chrono::milliseconds Seconds(double s);

}  // namespace llamarl::controller
