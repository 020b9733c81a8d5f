#include "reward/subprocess.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <thread>

#include "core/check.h"

extern char** environ;

namespace llamarl::reward {
namespace {

using Clock = std::chrono::steady_clock;

void SetNonBlocking(int fd) { fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK); }

// Moves complete lines from `pending` into `lines`.
void SplitLines(std::string* pending, std::vector<std::string>* lines) {
  size_t start = 0;
  for (size_t nl; (nl = pending->find('\n', start)) != std::string::npos; start = nl + 1) {
    std::string line = pending->substr(start, nl - start);
    if (!line.empty() && line.back() == '\r') line.pop_back();
    lines->push_back(std::move(line));
  }
  pending->erase(0, start);
}

}  // namespace

ChildProcess::ChildProcess(const std::vector<std::string>& argv) {
  LLAMARL_CHECK(!argv.empty() && !argv[0].empty(), "reward command: empty argv; give the program and ",
                "its arguments as a list, e.g. [\"/bin/sh\", \"-c\", \"my_scorer\"]");
  int in_fds[2], out_fds[2];
  LLAMARL_CHECK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, in_fds) == 0,
                "reward command: socketpair failed: ", std::strerror(errno));
  if (pipe2(out_fds, O_CLOEXEC) != 0) {
    int err = errno;
    close(in_fds[0]);
    close(in_fds[1]);
    LLAMARL_FAIL("reward command: pipe failed: ", std::strerror(err));
  }
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_adddup2(&actions, in_fds[1], 0);
  posix_spawn_file_actions_adddup2(&actions, out_fds[1], 1);
  posix_spawnattr_t attr;
  posix_spawnattr_init(&attr);
  sigset_t defaults;
  sigemptyset(&defaults);
  sigaddset(&defaults, SIGPIPE);  // MPI and others ignore SIGPIPE; the child should not inherit that
  posix_spawnattr_setsigdefault(&attr, &defaults);
  posix_spawnattr_setpgroup(&attr, 0);
  posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETPGROUP | POSIX_SPAWN_SETSIGDEF);
  std::vector<char*> args;
  for (const std::string& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  int rc = posix_spawnp(&pid_, args[0], &actions, &attr, args.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  posix_spawnattr_destroy(&attr);
  close(in_fds[1]);
  close(out_fds[1]);
  stdin_fd_ = in_fds[0];
  stdout_fd_ = out_fds[0];
  if (rc != 0) {
    CloseFds();
    LLAMARL_FAIL("reward command: cannot start '", argv[0], "': ", std::strerror(rc),
                 "; check the path (searched in PATH) and that it is executable");
  }
  SetNonBlocking(stdin_fd_);
  SetNonBlocking(stdout_fd_);
}

ChildProcess::~ChildProcess() {
  if (stdin_fd_ >= 0) shutdown(stdin_fd_, SHUT_WR);
  // A well-behaved child exits on EOF; give it a moment before killing it.
  for (int i = 0; i < 20 && Running(); ++i) std::this_thread::sleep_for(std::chrono::milliseconds(10));
  Kill();
  CloseFds();
}

void ChildProcess::CloseFds() {
  if (stdin_fd_ >= 0) close(stdin_fd_);
  if (stdout_fd_ >= 0) close(stdout_fd_);
  stdin_fd_ = stdout_fd_ = -1;
}

bool ChildProcess::Running() {
  if (reaped_ || pid_ <= 0) return false;
  pid_t r = waitpid(pid_, &wait_status_, WNOHANG);
  if (r == pid_) reaped_ = true;
  return !reaped_;
}

void ChildProcess::Kill() {
  if (reaped_ || pid_ <= 0) return;
  kill(-pid_, SIGKILL);
  kill(pid_, SIGKILL);  // in case it left its process group
  if (waitpid(pid_, &wait_status_, 0) == pid_) reaped_ = true;
}

std::string ChildProcess::StatusDescription() const {
  if (!reaped_) return "running";
  if (WIFEXITED(wait_status_)) return "exited with status " + std::to_string(WEXITSTATUS(wait_status_));
  if (WIFSIGNALED(wait_status_)) return "killed by signal " + std::to_string(WTERMSIG(wait_status_));
  return "stopped";
}

ChildProcess::Exchange ChildProcess::WriteAndReadLines(const std::string& input, size_t num_lines,
                                                       double timeout_s) {
  Exchange ex;
  SplitLines(&pending_, &ex.lines);
  auto deadline = Clock::now() + std::chrono::duration<double>(timeout_s);
  size_t written = 0;
  bool can_write = true;
  while (ex.lines.size() < num_lines) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
    if (left <= 0) {
      ex.timed_out = true;
      break;
    }
    pollfd fds[2] = {{stdout_fd_, POLLIN, 0}, {stdin_fd_, POLLOUT, 0}};
    bool writing = can_write && written < input.size();
    int rc = poll(fds, writing ? 2 : 1, static_cast<int>(left));
    if (rc < 0 && errno == EINTR) continue;
    LLAMARL_CHECK(rc >= 0, "reward command: poll failed: ", std::strerror(errno));
    if (writing && fds[1].revents) {
      ssize_t n = send(stdin_fd_, input.data() + written, input.size() - written, MSG_NOSIGNAL);
      if (n > 0) written += size_t(n);
      // The child closed its stdin (or exited): stop writing, read what it said before that.
      if (n < 0 && errno != EAGAIN && errno != EINTR) can_write = false;
    }
    if (fds[0].revents) {
      char buffer[65536];
      ssize_t n = read(stdout_fd_, buffer, sizeof buffer);
      if (n == 0) {
        ex.closed = true;
        break;
      }
      if (n > 0) {
        pending_.append(buffer, size_t(n));
        SplitLines(&pending_, &ex.lines);
      }
    }
  }
  return ex;
}

}  // namespace llamarl::reward
