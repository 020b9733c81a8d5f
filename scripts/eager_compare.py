#!/usr/bin/python3
"""llamarl against a plain PyTorch-eager Llama on the same checkpoint and threads (not part of CI).

Writes one random HF-format Llama (hidden 512, 6 layers, 8 heads / 4 kv heads, vocab 8192, untied
head: 27M parameters) to a temporary directory, then measures on this machine, each pair in one run:
  train:    `llamarl bench train --model DIR --algorithm sft --json` against the same SFT step
            (forward, token log-probs on the response, backward, AdamW) written in PyTorch eager;
  generate: `llamarl bench generate --model DIR --batches 32 --json` against an eager KV-cache decode
            loop at batch 32 (greedy, the same prompt and new-token counts).
and prints the ratios (llamarl / eager). Both sides get the same OMP_NUM_THREADS (--threads).

Needs Debian's python3-torch (`apt-get install python3-torch`, for /usr/bin/python3, which the
shebang names) and a built llamarl (BUILD_DIR or build/, or --llamarl). Figures on a
shared machine are noisy: run it when the machine is otherwise idle, and repeat.
"""
import argparse
import json
import math
import os
import struct
import subprocess
import sys
import tempfile
import time

import torch
import torch.nn.functional as F
from torch import nn

CONFIG = dict(vocab_size=8192, hidden_size=512, intermediate_size=1536, num_hidden_layers=6,
              num_attention_heads=8, num_key_value_heads=4, rope_theta=10000.0, rms_norm_eps=1e-6,
              tie_word_embeddings=False, max_position_embeddings=2048)


class RMSNorm(nn.Module):
    def __init__(self, dim, eps):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.eps = eps

    def forward(self, x):
        x32 = x.float()
        return self.weight * (x32 * torch.rsqrt(x32.pow(2).mean(-1, keepdim=True) + self.eps)).to(x.dtype)


def rotate_half(x):
    half = x.shape[-1] // 2
    return torch.cat((-x[..., half:], x[..., :half]), -1)


class Attention(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.h, self.k, self.e = c["num_attention_heads"], c["num_key_value_heads"], c["hidden_size"] // c["num_attention_heads"]
        d = c["hidden_size"]
        self.q_proj = nn.Linear(d, self.h * self.e, bias=False)
        self.k_proj = nn.Linear(d, self.k * self.e, bias=False)
        self.v_proj = nn.Linear(d, self.k * self.e, bias=False)
        self.o_proj = nn.Linear(self.h * self.e, d, bias=False)

    def forward(self, x, cos, sin, mask, cache=None):
        b, t, _ = x.shape
        q = self.q_proj(x).view(b, t, self.h, self.e).transpose(1, 2)
        k = self.k_proj(x).view(b, t, self.k, self.e).transpose(1, 2)
        v = self.v_proj(x).view(b, t, self.k, self.e).transpose(1, 2)
        q, k = q * cos + rotate_half(q) * sin, k * cos + rotate_half(k) * sin
        if cache is not None:  # (keys, values, length): preallocated [B, K, S, E]
            keys, values, length = cache
            keys[:, :, length:length + t] = k
            values[:, :, length:length + t] = v
            k, v = keys[:, :, :length + t], values[:, :, :length + t]
        groups = self.h // self.k
        k = k.repeat_interleave(groups, 1)
        v = v.repeat_interleave(groups, 1)
        scores = q @ k.transpose(2, 3) / math.sqrt(self.e)
        if mask is not None:
            scores = scores.masked_fill(~mask, torch.finfo(scores.dtype).min)
        out = torch.softmax(scores.float(), -1).to(q.dtype) @ v
        return self.o_proj(out.transpose(1, 2).reshape(b, t, self.h * self.e))


class Mlp(nn.Module):
    def __init__(self, c):
        super().__init__()
        d, i = c["hidden_size"], c["intermediate_size"]
        self.gate_proj = nn.Linear(d, i, bias=False)
        self.up_proj = nn.Linear(d, i, bias=False)
        self.down_proj = nn.Linear(i, d, bias=False)

    def forward(self, x):
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


class Layer(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.self_attn = Attention(c)
        self.mlp = Mlp(c)
        self.input_layernorm = RMSNorm(c["hidden_size"], c["rms_norm_eps"])
        self.post_attention_layernorm = RMSNorm(c["hidden_size"], c["rms_norm_eps"])

    def forward(self, x, cos, sin, mask, cache=None):
        h = x + self.self_attn(self.input_layernorm(x), cos, sin, mask, cache)
        return h + self.mlp(self.post_attention_layernorm(h))


class Backbone(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.embed_tokens = nn.Embedding(c["vocab_size"], c["hidden_size"])
        self.layers = nn.ModuleList(Layer(c) for _ in range(c["num_hidden_layers"]))
        self.norm = RMSNorm(c["hidden_size"], c["rms_norm_eps"])


class Llama(nn.Module):
    """HF's parameter names, so that state_dict() is the checkpoint llamarl loads."""

    def __init__(self, c):
        super().__init__()
        self.c = c
        self.model = Backbone(c)
        self.lm_head = nn.Linear(c["hidden_size"], c["vocab_size"], bias=False)
        e = c["hidden_size"] // c["num_attention_heads"]
        self.inv_freq = 1.0 / (c["rope_theta"] ** (torch.arange(0, e, 2).float() / e))

    def rope(self, positions):  # positions [B, T] -> cos, sin [B, 1, T, E]
        freqs = positions.float().unsqueeze(-1) * self.inv_freq
        emb = torch.cat((freqs, freqs), -1)
        return emb.cos().unsqueeze(1), emb.sin().unsqueeze(1)

    def hidden(self, ids, positions, mask, caches=None):
        x = self.model.embed_tokens(ids)
        cos, sin = self.rope(positions)
        for i, layer in enumerate(self.model.layers):
            x = layer(x, cos, sin, mask, None if caches is None else caches[i])
        return self.model.norm(x)


def write_checkpoint(model, directory):
    tensors = {name: t.detach().contiguous() for name, t in model.state_dict().items()}
    header, offset = {}, 0
    for name, t in tensors.items():
        header[name] = {"dtype": "F32", "shape": list(t.shape), "data_offsets": [offset, offset + t.numel() * 4]}
        offset += t.numel() * 4
    blob = json.dumps(header).encode()
    blob += b" " * ((8 - len(blob) % 8) % 8)
    with open(os.path.join(directory, "model.safetensors"), "wb") as f:
        f.write(struct.pack("<Q", len(blob)))
        f.write(blob)
        for t in tensors.values():
            f.write(t.numpy().tobytes())
    config = dict(CONFIG, model_type="llama", architectures=["LlamaForCausalLM"], hidden_act="silu",
                  torch_dtype="float32", bos_token_id=1, eos_token_id=2)
    with open(os.path.join(directory, "config.json"), "w") as f:
        json.dump(config, f, indent=2)


def eager_train_tokens_per_s(model, a):
    """The fastest of a.steps SFT steps (after one warm-up) over samples x (prompt + response) tokens."""
    opt = torch.optim.AdamW(model.parameters(), lr=1e-5)
    length = a.prompt_len + a.response_len
    ids = torch.randint(0, CONFIG["vocab_size"], (a.samples, length))
    positions = torch.arange(length).expand(a.samples, length)
    mask = torch.ones(length, length, dtype=torch.bool).tril().view(1, 1, length, length)
    best = float("inf")
    for step in range(a.steps + 1):
        start = time.perf_counter()
        h = model.hidden(ids[:, :-1], positions[:, :-1], mask[:, :, :-1, :-1])
        h = h[:, a.prompt_len - 1:]  # the response's predictions
        logp = torch.log_softmax(model.lm_head(h).float(), -1)
        loss = -logp.gather(-1, ids[:, a.prompt_len:].unsqueeze(-1)).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if step > 0:
            best = min(best, time.perf_counter() - start)
    return a.samples * length / best


@torch.no_grad()
def eager_generate_tokens_per_s(model, a):
    """Greedy KV-cache decoding of a.new_tokens tokens for a.batch prompts of a.gen_prompt_len tokens."""
    c, b, p = CONFIG, a.batch, a.gen_prompt_len
    e = c["hidden_size"] // c["num_attention_heads"]
    total = p + a.new_tokens
    caches = [[torch.empty(b, c["num_key_value_heads"], total, e), torch.empty(b, c["num_key_value_heads"], total, e)]
              for _ in range(c["num_hidden_layers"])]
    ids = torch.randint(0, c["vocab_size"], (b, p))
    start = time.perf_counter()
    mask = torch.ones(p, p, dtype=torch.bool).tril().view(1, 1, p, p)
    h = model.hidden(ids, torch.arange(p).expand(b, p), mask, [(k, v, 0) for k, v in caches])
    token = model.lm_head(h[:, -1]).argmax(-1, keepdim=True)
    for i in range(1, a.new_tokens):
        length = p + i - 1
        h = model.hidden(token, torch.full((b, 1), length), None, [(k, v, length) for k, v in caches])
        token = model.lm_head(h[:, -1]).argmax(-1, keepdim=True)
    return b * a.new_tokens / (time.perf_counter() - start)


def run_llamarl(a, args):
    env = dict(os.environ, OMP_NUM_THREADS=str(a.threads), LLAMARL_TORCH_THREADS=str(a.threads))
    out = subprocess.run([a.llamarl] + args + ["--json"], env=env, check=True, capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main():
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--llamarl", default=os.path.join(os.environ.get("BUILD_DIR", os.path.join(root, "build")),
                                                          "cli", "llamarl"))
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--samples", type=int, default=4, help="train: sequences per step")
    parser.add_argument("--prompt-len", type=int, default=64)
    parser.add_argument("--response-len", type=int, default=192)
    parser.add_argument("--steps", type=int, default=2, help="train: timed steps (the fastest counts)")
    parser.add_argument("--batch", type=int, default=32, help="generate: sequences decoded together")
    parser.add_argument("--gen-prompt-len", type=int, default=32)
    parser.add_argument("--new-tokens", type=int, default=256)
    parser.add_argument("--rounds", type=int, default=2, help="alternating rounds per pair (the best counts)")
    parser.add_argument("--skip", choices=["train", "generate"], action="append", default=[])
    a = parser.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    model = Llama(CONFIG)
    with torch.no_grad():
        for name, p in model.named_parameters():
            p.copy_(torch.ones_like(p) if name.endswith("norm.weight") else torch.randn_like(p) * 0.02)
    result = {"threads": a.threads, "rounds": a.rounds, "torch": torch.__version__,
              "model_params": sum(p.numel() for p in model.parameters())}
    with tempfile.TemporaryDirectory(prefix="eager_compare_") as directory:
        write_checkpoint(model, directory)
        # The two sides alternate for --rounds rounds and the best of each counts, so that a load
        # change on a shared machine does not fall on one side only.
        if "train" not in a.skip:
            ours, eager = 0.0, 0.0
            for _ in range(a.rounds):
                ours = max(ours, run_llamarl(a, [
                    "bench", "train", "--model", directory, "--algorithm", "sft",
                    "--samples-per-rank", str(a.samples), "--prompt-len", str(a.prompt_len),
                    "--response-len", str(a.response_len), "--steps", str(a.steps),
                    "--micro-batch-tokens", str(a.samples * (a.prompt_len + a.response_len))])["tokens_per_s"])
                eager = max(eager, eager_train_tokens_per_s(model, a))
            result["train"] = {"llamarl_tokens_per_s": ours, "eager_tokens_per_s": eager, "ratio": ours / eager}
        if "generate" not in a.skip:
            engine, eager = 0.0, 0.0
            for _ in range(a.rounds):
                ours = run_llamarl(a, ["bench", "generate", "--model", directory, "--batches", str(a.batch),
                                       "--prompt-len", str(a.gen_prompt_len), "--new-tokens", str(a.new_tokens),
                                       "--recompute-steps", "1"])
                engine = max(engine, ours["results"][0]["engine_tokens_per_s"])
                eager = max(eager, eager_generate_tokens_per_s(model, a))
            result["generate"] = {"batch": a.batch, "llamarl_tokens_per_s": engine, "eager_tokens_per_s": eager,
                                  "ratio": engine / eager}
    print(json.dumps(result))
    for kind in ("train", "generate"):
        if kind in result:
            r = result[kind]
            print(f"{kind}: llamarl {r['llamarl_tokens_per_s']:.0f} tokens/s, eager {r['eager_tokens_per_s']:.0f} "
                  f"tokens/s, ratio {r['ratio']:.2f}x ({a.threads} thread(s))", file=sys.stderr)


if __name__ == "__main__":
    main()
