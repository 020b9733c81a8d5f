// One GEMM for several linear layers that read the same input: y = x [W_0; W_1; ...]^T (+ [b_0; b_1; ...]),
// the outputs side by side along the last dim. The decoder's q/k/v and gate/up projections keep their
// own parameters (Hugging Face's names, so checkpoints, weight sync and tensor parallelism see no
// difference) and run as one matmul each, forward and backward.
// When the weights lie back to back in one storage (the decoder allocates them so, and flat ZeRO-3
// or master buffers in named_parameters() order keep them so) the GEMM reads them in place; otherwise
// they are concatenated once per call.
// Legend: R = rows (every leading dim of x together), D = in features, N_i = out features of W_i.
#pragma once

#include <ATen/core/Tensor.h>

namespace llamarl::kernels {

// x: [..., D]; weights: W_i [N_i, D], all of x's dtype and device; biases: empty or b_i [N_i], one per
// weight -> y: [..., sum N_i] in x's dtype, equal (up to the order of float additions) to
// cat({linear(x, W_i, b_i)}, -1). Differentiable in x, the weights and the biases: the backward is
// one GEMM for x's gradient and one for all the weights' gradients together.
at::Tensor FusedLinear(const at::Tensor& x, at::TensorList weights, at::TensorList biases = {});

// True when `weights` are contiguous and back to back in one storage, so FusedLinear reads them
// without a copy.
bool AreAdjacentRows(at::TensorList weights);

}  // namespace llamarl::kernels
