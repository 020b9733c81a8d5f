#include "bench/logprobs_bench.h"

#include "core/check.h"
#include "core/device.h"
#include "core/error_text.h"
#include "kernels/token_logprobs.h"

#include <ATen/ATen.h>
#include <ATen/Parallel.h>

#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <csignal>
#include <cmath>
#include <cstring>
#include <fstream>
#include <functional>
#include <limits>
#include <string>

namespace llamarl::bench {
namespace {

// Why a forked child per variant, reading VmHWM: LibTorch 1.13's CPU allocator has no statistics
// and no hook for a custom allocator that also sees autograd's temporaries, whereas the kernel's
// high-water mark of resident memory counts every byte either variant really touches (ATen's large
// buffers are mmap'd and returned to the OS when freed). A fresh child per variant keeps one
// variant's freed-but-cached heap from hiding the other's peak, and clear_refs resets the mark once
// the inputs are resident, so the figure is the working memory of forward+backward (gradients
// included), not the inputs.
int64_t ReadStatusBytes(const std::string& field) {
  std::ifstream status("/proc/self/status");
  std::string line;
  while (std::getline(status, line)) {
    if (line.rfind(field + ":", 0) == 0) return std::stoll(line.substr(field.size() + 1)) * 1024;  // "... kB"
  }
  LLAMARL_FAIL("bench: /proc/self/status has no ", field, " line; peak-memory measurement needs Linux procfs");
}

void ResetPeakRss() {
  std::ofstream clear_refs("/proc/self/clear_refs");
  clear_refs << "5";  // resets VmHWM to the current RSS (Linux >= 4.0)
  LLAMARL_CHECK(clear_refs.good(), "bench: cannot write /proc/self/clear_refs to reset the peak RSS (Linux >= 4.0)");
}

at::ScalarType ParseDtype(const std::string& name) {
  if (name == "float32") return at::kFloat;
  if (name == "bfloat16") return at::kBFloat16;
  LLAMARL_FAIL("bench logprobs: dtype '", name, "' is not supported; use float32 or bfloat16");
}

// One variant's forward+backward on freshly made inputs; runs inside the child.
nlohmann::json MeasureVariant(bool fused, const LogprobsBenchOptions& o) {
  at::manual_seed(o.seed);
  const at::ScalarType dtype = ParseDtype(o.dtype);
  const bool gpu = o.device.is_cuda();
  // Logits of realistic spread: unit hidden states, weights ~ N(0, 1/D); drawn on the host.
  at::Tensor hidden = at::randn({o.tokens, o.hidden}).to(o.device, dtype).requires_grad_(true);
  at::Tensor weight =
      (at::randn({o.vocab, o.hidden}) / std::sqrt(double(o.hidden))).to(o.device, dtype).requires_grad_(true);
  const at::Tensor targets = at::randint(0, o.vocab, {o.tokens}, at::kLong).to(o.device);
  const kernels::TokenLogprobsOptions options{o.token_chunk, o.vocab_chunk, 1.0};
  SynchronizeDevice(o.device);
  const int64_t baseline = gpu ? AllocatedDeviceBytes(o.device).current : ReadStatusBytes("VmRSS");
  if (gpu) ResetPeakDeviceBytes(o.device);
  else ResetPeakRss();
  double best_seconds = std::numeric_limits<double>::infinity();
  at::Tensor logprobs;
  for (int64_t r = 0; r < o.repeats; ++r) {
    hidden.mutable_grad() = at::Tensor();
    weight.mutable_grad() = at::Tensor();
    SynchronizeDevice(o.device);
    const auto start = std::chrono::steady_clock::now();
    if (fused) {
      logprobs = kernels::TokenLogprobs(hidden, weight, targets, options);
    } else {
      logprobs = at::log_softmax(at::matmul(hidden, weight.t()).to(at::kFloat), -1)
                     .gather(1, targets.unsqueeze(1)).squeeze(1);
    }
    logprobs.sum().backward();
    SynchronizeDevice(o.device);
    best_seconds = std::min(best_seconds, std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
  }
  const at::Tensor lp = logprobs.detach().cpu().contiguous();
  const int64_t peak = gpu ? AllocatedDeviceBytes(o.device).peak : ReadStatusBytes("VmHWM");
  return {{"seconds", best_seconds},
          {"peak_bytes", peak - baseline},
          {"baseline_bytes", baseline},
          {"logprobs", std::vector<float>(lp.data_ptr<float>(), lp.data_ptr<float>() + lp.numel())},
          {"grad_weight_norm", weight.grad().to(at::kDouble).norm().item<double>()},
          {"threads", at::get_num_threads()}};
}

// Runs body in a forked child and returns the JSON it wrote to a pipe. The child ends with _exit so
// that no destructors or atexit handlers of the parent's state run twice.
nlohmann::json RunInChild(const std::string& name, const std::function<nlohmann::json()>& body) {
  int fds[2];
  LLAMARL_CHECK(pipe(fds) == 0, "bench: pipe() failed: ", std::strerror(errno));
  const pid_t pid = fork();
  LLAMARL_CHECK(pid >= 0, "bench: fork() failed: ", std::strerror(errno));
  if (pid == 0) {
    close(fds[0]);
    std::string out;
    int code = 0;
    try {
      out = body().dump();
    } catch (const std::exception& e) {
      out = nlohmann::json{{"error", ErrorText(e)}}.dump();
      code = 1;
    }
    for (size_t done = 0; done < out.size();) {
      const ssize_t n = write(fds[1], out.data() + done, out.size() - done);
      if (n <= 0) break;
      done += static_cast<size_t>(n);
    }
    close(fds[1]);
    _exit(code);
  }
  close(fds[1]);
  std::string text;
  char buffer[1 << 16];
  for (ssize_t n; (n = read(fds[0], buffer, sizeof(buffer))) > 0;) text.append(buffer, static_cast<size_t>(n));
  close(fds[0]);
  int status = 0;
  waitpid(pid, &status, 0);
  LLAMARL_CHECK(!WIFSIGNALED(status), "bench logprobs: the ", name, " variant was killed by signal ", WTERMSIG(status),
                WTERMSIG(status) == SIGKILL ? " (likely out of memory; lower --tokens or --vocab)" : "");
  LLAMARL_CHECK(!text.empty(), "bench logprobs: the ", name, " variant exited with status ", WEXITSTATUS(status),
                " and no result");
  nlohmann::json result = nlohmann::json::parse(text);
  LLAMARL_CHECK(!result.contains("error"), "bench logprobs: the ", name, " variant failed: ",
                result["error"].get<std::string>());
  return result;
}

void CheckOptions(const LogprobsBenchOptions& o) {
  LLAMARL_CHECK(o.tokens > 0 && o.vocab > 0 && o.hidden > 0, "bench logprobs: tokens, vocab and hidden must be positive, ",
                "got T=", o.tokens, " V=", o.vocab, " D=", o.hidden);
  LLAMARL_CHECK(o.repeats > 0, "bench logprobs: repeats must be positive, got ", o.repeats);
  ParseDtype(o.dtype);
}

}  // namespace

nlohmann::json RunLogprobsBench(const LogprobsBenchOptions& o) {
  CheckOptions(o);
  // A GPU's allocator keeps exact statistics (and CUDA does not survive fork): no child there.
  auto run = [&](const char* name, bool fused) {
    return o.device.is_cuda() ? MeasureVariant(fused, o) : RunInChild(name, [&] { return MeasureVariant(fused, o); });
  };
  const nlohmann::json naive = run("naive", false);
  const nlohmann::json fused = run("fused", true);
  const auto fused_lp = fused["logprobs"].get<std::vector<float>>();
  const auto naive_lp = naive["logprobs"].get<std::vector<float>>();
  double max_diff = 0;
  for (size_t i = 0; i < fused_lp.size(); ++i) max_diff = std::max(max_diff, double(std::fabs(fused_lp[i] - naive_lp[i])));
  const double fused_peak = fused["peak_bytes"].get<double>(), naive_peak = naive["peak_bytes"].get<double>();
  return {{"fused_peak_bytes", fused["peak_bytes"]},
          {"naive_peak_bytes", naive["peak_bytes"]},
          {"memory_ratio", naive_peak / std::max(fused_peak, 1.0)},
          {"time_ratio", fused["seconds"].get<double>() / naive["seconds"].get<double>()},
          {"fused_seconds", fused["seconds"]},
          {"naive_seconds", naive["seconds"]},
          {"max_abs_logprob_diff", max_diff},
          {"grad_weight_norm_fused", fused["grad_weight_norm"]},
          {"grad_weight_norm_naive", naive["grad_weight_norm"]},
          {"tokens", o.tokens},
          {"vocab", o.vocab},
          {"hidden", o.hidden},
          {"dtype", o.dtype},
          {"device", o.device.str()},
          {"repeats", o.repeats},
          {"threads", fused["threads"]}};
}

}  // namespace llamarl::bench
