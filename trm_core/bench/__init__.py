"""The benchmark behind `trm-tui bench`: training throughput, decode latency and eval throughput.

Everything is measured in one process, after warm-up, as the median of several repeats:

- train: the original notebook's step (eager fp32, full `logits()` + cross-entropy over B x T x V,
  plain AdamW) against the optimized one (bf16 autocast, regional `torch.compile`, chunked
  `model.loss`, fused AdamW), both on the same FIXED [B, T] batches of packed real tokens (the
  shape reference numbers are quoted at); plus the optimized step on length-bucketed real
  problems (`optimized_bucketed`, what the Trainer runs). tokens/s counts real tokens, never padding.
- decode: batch-1 ms/token through `Generator` (the product's own paths): full recompute per token
  (`kv_cache=False`), the static KV cache eagerly, with the one-token step in a CUDA graph, and
  with the step compiled before capture (`compile_step=True`). The greedy text must agree.
- eval: GSM8K test problems/s through `evaluate.evaluate` (greedy, calculator, up to 256 tokens).
Decode and eval run in the product's inference dtype (`--dtype auto`: bf16 on CUDA).

FLOPs of one training step (one supervision pass), D = hidden, I = SwiGLU width, V = vocab:
    per layer pass and position: 2 * (3D^2 + D^2 + 3DI) = 8D^2 + 6DI        (qkv, o, gate/up, down)
                                 + 2 * T * D                                 (QK^T and AV, causal half)
    forward  = P * B * T * per_layer_pass     P = H * (L + 1) * layers (all passes, grad or not)
    backward = 2 * forward of the grad passes G = grad_cycles * (L + 1) * layers
    LM head  = 6 * D * V per supervised position (forward 2DV, backward 4DV)
over the executed shape [B, T] (padding inside a bucket included, as it is computed); MFU =
achieved / peak, peak = 989 TFLOP/s dense bf16 (H100 / H200 SXM); null where no peak is known.
"""
