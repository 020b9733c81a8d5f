// A child program with its stdin and stdout connected to us, for the `command` reward.
//
// Started with posix_spawnp in its own process group, so that Kill() also stops what a shell
// wrapper started. Its stdin is a socket (we write with MSG_NOSIGNAL, so a child that exits early
// gives an error result rather than SIGPIPE killing the whole trainer); its stdout is a pipe; its
// stderr is ours, so its complaints reach the log.
//
// Thread-safety: none; one owner.
#pragma once

#include <sys/types.h>

#include <string>
#include <vector>

namespace llamarl::reward {

class ChildProcess {
 public:
  // Throws naming the program and the system error when it cannot be started.
  explicit ChildProcess(const std::vector<std::string>& argv);
  // Closes the child's stdin, gives it a moment to exit, then kills its process group.
  ~ChildProcess();
  ChildProcess(const ChildProcess&) = delete;
  ChildProcess& operator=(const ChildProcess&) = delete;

  struct Exchange {
    std::vector<std::string> lines;  // complete lines read, without '\n'
    bool timed_out = false;          // the deadline passed before num_lines arrived
    bool closed = false;             // the child closed its stdout (usually: it exited)
  };
  // Writes `input` while reading, until `num_lines` lines have arrived, the child closes its
  // stdout, or `timeout_s` passes. Writing and reading are interleaved so that a child that answers
  // before reading everything cannot deadlock against us on full pipes.
  Exchange WriteAndReadLines(const std::string& input, size_t num_lines, double timeout_s);

  // False once the child has exited (reaps it).
  bool Running();
  // "exited with status 3", "killed by signal 9", or "running".
  std::string StatusDescription() const;
  // SIGKILL to the process group, then reaps.
  void Kill();
  pid_t pid() const { return pid_; }

 private:
  void CloseFds();
  pid_t pid_ = -1;
  int stdin_fd_ = -1;
  int stdout_fd_ = -1;
  int wait_status_ = 0;
  bool reaped_ = false;
  std::string pending_;  // bytes after the last complete line
};

}  // namespace llamarl::reward
