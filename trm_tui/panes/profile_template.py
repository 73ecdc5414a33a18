"""The starting text of a new profile: every section, commented, small enough for a CPU."""

TEMPLATE = """\
# A new profile. Every key is optional; the defaults are in trm_core/profile.py.
name = "new"
description = ""

[model]
arch = "trm"            # "trm" (recursive) or "transformer" (plain baseline)
hidden_size = 128       # width of the shared net and the latent streams z_H / z_L
num_heads = 4           # hidden_size must be divisible by num_heads
num_layers = 2          # blocks in the shared net
H_cycles = 2            # outer cycles: z_H = net(z_H + z_L)
L_cycles = 2            # inner cycles per outer cycle: z_L = net(z_L + z_H + x)
grad_cycles = 1         # the last outer cycle(s) that get gradients

[tokenizer]
name = "byte"           # "byte", "gpt2" or "hf:<repo-or-dir>"

[data]
source = "synthetic"    # "synthetic", "jsonl:<file-or-dir>" or "hf:openai/gsm8k"
max_length = 256
val_size = 256

[train]
batch_size = 32
max_steps = 600         # 0 = run all epochs
lr = 2e-3
warmup_steps = 50
supervision = "deep"    # "deep" or "accumulate"
supervision_steps = 1
eval_every = 50
checkpoint_every = 200

[early_stopping]
enabled = true
patience = 4            # evaluations without improvement before stopping

[generate]
temperature = 0.0       # 0 = greedy
max_tokens = 128
calculator = true
"""
