"""Generation: KV cache exactness, sampling, stop strings, calculator, batches (tiny random models, CPU)."""

from __future__ import annotations

import math
from typing import Any

import pytest
import torch
from torch import nn

from trm_core.data.tokenizers import build_tokenizer
from trm_core.generation.generator import Generator
from trm_core.generation.sampling import filter_logits, sample_next
from trm_core.generation.textstream import Piece, open_calculation
from trm_core.model.depth import Depth
from trm_core.model.lm import build_model
from trm_core.profile import ModelConfig

PROMPTS = ["Question: 2+2?\nAnswer:", "hi", "Question: Tom has 12 apples and eats 3. How many?\nAnswer:"]


class RecordingTokenizer:
    """The byte tokenizer, recording every id generation pushes into a decoder (exact id comparisons)."""

    def __init__(self) -> None:
        self._tok = build_tokenizer("byte")
        self.spec, self.vocab_size = self._tok.spec, self._tok.vocab_size
        self.eos_id, self.pad_id = self._tok.eos_id, self._tok.pad_id
        self.pushed: list[list[int]] = []

    def encode(self, text: str) -> list[int]:
        return self._tok.encode(text)

    def decode(self, ids: Any) -> str:
        return self._tok.decode(ids)

    def incremental_decoder(self) -> Any:
        inner, record = self._tok.incremental_decoder(), []
        self.pushed.append(record)

        class Recording:
            def push(self, token_id: int) -> str:
                record.append(token_id)
                return inner.push(token_id)

            def flush(self) -> str:
                return inner.flush()

        return Recording()


def tiny_generator(arch: str = "trm", S: int = 1, seed: int = 0, **kw: Any) -> Generator:
    torch.manual_seed(seed)
    tok = RecordingTokenizer()
    cfg = ModelConfig(
        arch=arch, hidden_size=32, num_heads=4, num_layers=2, H_cycles=2, L_cycles=2, tie_embeddings=False
    )
    model = build_model(cfg, tok.vocab_size).eval()
    with torch.no_grad():  # unit-scale embeddings and head: a random model then emits varied tokens
        model.embed_tokens.weight.normal_(0, 1.0)
        model.lm_head.weight.normal_(0, 1.0)
    return Generator(model, tok, depth=Depth(S), **kw)


CONFIGS = [("trm", 1), ("trm", 2), ("transformer", 1)]


@pytest.fixture(scope="module")
def gen() -> Generator:
    return tiny_generator("trm", 2)


# --------------------------------------------------------------------------- exactness


@pytest.mark.parametrize(("arch", "S"), CONFIGS)
def test_cached_equals_uncached_greedy(arch: str, S: int) -> None:
    g = tiny_generator(arch, S)
    tok = g.tokenizer
    cached = g.generate(PROMPTS[0], max_tokens=24, kv_cache=True)
    uncached = g.generate(PROMPTS[0], max_tokens=24, kv_cache=False)
    assert cached == uncached
    assert tok.pushed[0] == tok.pushed[1]
    assert len(set(tok.pushed[0])) > 3, "the test model should produce varied tokens"


@pytest.mark.parametrize(("arch", "S"), CONFIGS)
def test_batched_equals_one_by_one_greedy(arch: str, S: int) -> None:
    g = tiny_generator(arch, S)
    one_by_one = [g.generate(p, max_tokens=12) for p in PROMPTS]
    ids_one = g.tokenizer.pushed[:]
    g.tokenizer.pushed.clear()
    assert g.generate_batch(PROMPTS, max_tokens=12) == one_by_one
    assert g.tokenizer.pushed == ids_one


def test_supervision_steps_change_the_output() -> None:
    # S passes at inference too: S=1 and S=2 must not silently run the same computation.
    a = tiny_generator("trm", 1)
    b = tiny_generator("trm", 2)
    a.generate(PROMPTS[0], max_tokens=16)
    b.generate(PROMPTS[0], max_tokens=16)
    assert a.tokenizer.pushed != b.tokenizer.pushed


# --------------------------------------------------------------------------- sampling


def test_seeded_sampling_is_reproducible_and_seeds_differ(gen: Generator) -> None:
    kw = {"temperature": 1.0, "max_tokens": 16}
    first = gen.generate("abc", seed=1, **kw)
    assert gen.generate("abc", seed=1, **kw) == first
    assert gen.generate("abc", seed=2, **kw) != first


def test_unseeded_sampling_draws_a_fresh_seed_that_reproduces(gen: Generator) -> None:
    """Issue 15.5: no seed (the profile default) gives a new answer each time and tells its seed."""
    kw = {"max_tokens": 16, "temperature": 1.5}
    texts, seeds = [], []
    for _ in range(3):
        texts.append(gen.generate("abc", **kw))
        seeds.append(gen.last_seed)
    assert len(set(seeds)) == 3 and all(isinstance(s, int) and s >= 0 for s in seeds)
    assert len(set(texts)) > 1
    assert gen.generate("abc", seed=seeds[1], **kw) == texts[1]  # the shown seed reproduces it
    gen.generate("abc", max_tokens=4, temperature=0.0)
    assert gen.last_seed is None  # greedy: no seed involved


def test_top_k_one_equals_greedy(gen: Generator) -> None:
    greedy = gen.generate(PROMPTS[0], max_tokens=12)
    assert gen.generate(PROMPTS[0], max_tokens=12, temperature=1.5, top_k=1, seed=3) == greedy


PROBS = torch.tensor([0.05, 0.4, 0.05, 0.3, 0.2])  # order by probability: 1, 3, 4, then 0 and 2


@pytest.mark.parametrize(
    ("top_k", "top_p", "support"),
    [
        (0, 1.0, {0, 1, 2, 3, 4}),
        (1, 1.0, {1}),
        (2, 1.0, {1, 3}),
        (3, 1.0, {1, 3, 4}),
        (0, 0.4, {1}),  # the top token alone reaches 0.4
        (0, 0.5, {1, 3}),
        (0, 0.7, {1, 3}),  # 0.4 + 0.3 reaches 0.7 exactly
        (0, 0.75, {1, 3, 4}),
        (0, 0.01, {1}),  # the most likely token is always kept
        (2, 0.3, {1}),  # top-k first, then the nucleus of what is left
    ],
)
def test_filtering_restricts_the_support(top_k: int, top_p: float, support: set[int]) -> None:
    logits = PROBS.log().repeat(4, 1)
    filtered = filter_logits(logits, top_k, top_p)
    for row in filtered:
        assert {i for i in range(5) if math.isfinite(row[i].item())} == support
    g = torch.Generator().manual_seed(0)
    drawn = {
        int(i)
        for _ in range(200)
        for i in sample_next(logits, temperature=1.0, top_k=top_k, top_p=top_p, generator=g)
    }
    assert drawn <= support
    assert len(drawn) == len(support)  # 800 draws reach every allowed id (min prob 0.05/0.25)


def test_temperature_zero_is_argmax() -> None:
    logits = PROBS.log()[None]
    assert sample_next(logits, temperature=0.0).tolist() == [1]


# --------------------------------------------------------------------------- stop, limits, prompts


def test_stop_string_is_trimmed_and_never_streamed(gen: Generator) -> None:
    full = gen.generate(PROMPTS[2], max_tokens=20)
    # a 3-character stop string first occurring at index >= 4 (so some text comes before it)
    start = next(i for i in range(4, len(full) - 3) if full.find(full[i : i + 3]) == i)
    stop = full[start : start + 3]
    pieces = list(gen.stream(PROMPTS[2], max_tokens=20, stop=[stop, "never-there"]))
    text = "".join(p.text for p in pieces)
    assert text == full[: full.index(stop)]
    assert all(stop not in p.text for p in pieces)
    assert gen.generate_batch([PROMPTS[2], PROMPTS[0]], max_tokens=20, stop=[stop])[0] == text


def test_max_tokens_is_respected(gen: Generator) -> None:
    gen.tokenizer.pushed.clear()
    gen.generate(PROMPTS[0], max_tokens=5)
    assert len(gen.tokenizer.pushed[0]) <= 5
    assert gen.generate(PROMPTS[0], max_tokens=0) == ""


def test_long_prompt_is_cut_from_the_left() -> None:
    g = tiny_generator("transformer", 1, max_context=64)
    text = g.generate("x" * 500 + PROMPTS[0], max_tokens=8)
    assert g.last_dropped == len(("x" * 500 + PROMPTS[0]).encode()) - (64 - 8)
    assert isinstance(text, str)


def test_empty_and_odd_prompts_do_not_crash(gen: Generator) -> None:
    odd = ["", "\x00\x1b[31m", "caf\udce9", "\ud800", "é漢🙂"]
    for prompt in odd:
        assert isinstance(gen.generate(prompt, max_tokens=3), str)
    assert len(gen.generate_batch(odd, max_tokens=3)) == len(odd)


def test_pieces_are_whole_characters() -> None:
    g = tiny_generator("trm", 1)
    for piece in g.stream("é漢", max_tokens=30, temperature=1.0, seed=0):
        piece.text.encode("utf-8")  # a lone surrogate or split character would raise


# --------------------------------------------------------------------------- calculator


def test_open_calculation() -> None:
    assert open_calculation("so <<2+3*4=") == "2+3*4"
    assert open_calculation("<<1+1=2>> and <<3*4=") == "3*4"
    assert open_calculation("<<1+1=2>>") is None
    assert open_calculation("x = ") is None
    assert open_calculation("a=") is None


@pytest.mark.parametrize("kv_cache", [True, False])
def test_calculator_fills_an_open_annotation(gen: Generator, kv_cache: bool) -> None:
    pieces = list(gen.stream("Answer: <<2+3*4=", max_tokens=8, calculator=True, kv_cache=kv_cache))
    assert pieces[0] == Piece("14>>", "calculator")
    assert all(p.source == "model" for p in pieces[1:])
    off = list(gen.stream("Answer: <<2+3*4=", max_tokens=8, calculator=False))
    assert all(p.source == "model" for p in off)


def test_a_batch_row_with_the_calculator_decodes_as_the_stream_does(gen: Generator) -> None:
    # one decode loop: the stream (a batch of one, the result fed in one chunk) and a lockstep
    # row (the result fed a token per step) give the same text; seeded sampling too
    prompts = ["Answer: <<2+3*4=", "Answer: <<12*5=", PROMPTS[0]]
    alone = [gen.generate(p, max_tokens=12, calculator=True, temperature=0.0) for p in prompts]
    assert gen.generate_batch(prompts, max_tokens=12, calculator=True) == alone
    assert alone[0].startswith("14>>") and alone[1].startswith("60>>")
    opts = gen.options(max_tokens=12, calculator=True, temperature=1.0, seed=4)
    assert gen.generate(prompts[0], opts) == gen.generate(prompts[0], opts)


class ScriptedLM(nn.Module):
    """A stand-in CausalLM that always predicts `script`, position by position (ignores its input;
    a calculator result of another length than the scripted one shifts the rest).

    It follows the model contract (infer / new_cache / forward_step / decode_one), so it shows how
    the generator handles text it cannot get from a random model: annotations with wrong results.
    """

    def __init__(self, tokenizer: Any, prompt: str, script: str):
        super().__init__()
        self.dummy = nn.Parameter(torch.zeros(1))
        self.vocab = tokenizer.vocab_size
        self.target = tokenizer.encode(prompt + script) + [tokenizer.eos_id]

    def _logits(self, positions: range, batch: int) -> torch.Tensor:
        out = torch.zeros(batch, len(positions), self.vocab)
        for j, p in enumerate(positions):
            out[:, j, self.target[min(p + 1, len(self.target) - 1)]] = 10.0
        return out

    def infer(self, ids: torch.Tensor, supervision_steps: int) -> torch.Tensor:
        return self._logits(range(ids.shape[1]), ids.shape[0])

    def new_cache(self, batch_size: int, max_len: int, supervision_steps: int, **kw: Any) -> Any:
        class Cache:
            pos = 0
            max_len = 0
            pad = torch.zeros(batch_size, max_len, dtype=torch.bool)

            def reset(self) -> None:
                self.pos = 0

        cache = Cache()
        cache.max_len = max_len
        return cache

    def forward_step(self, ids, cache, pad_mask=None, positions=None, *, last_only=False):  # noqa: ANN001
        if pad_mask is not None:
            cache.pad = pad_mask
        n = ids.shape[1]
        # Per-row positions skip the left padding, as the real model's RoPE positions do.
        rows = []
        for b in range(ids.shape[0]):
            start = (
                cache.pos
                - int(cache.pad[b, : cache.pos].sum())
                - int(cache.pad[b, cache.pos : cache.pos + n].sum())
            )
            rows.append(self._logits(range(start, start + n), 1))
        cache.pos += n
        out = torch.cat(rows)
        return out[:, -1:] if last_only else out


def scripted_generator(prompt: str, script: str) -> Generator:
    tok = build_tokenizer("byte")
    return Generator(ScriptedLM(tok, prompt, script), tok)


def test_calculator_corrects_the_model_mid_generation() -> None:
    prompt = "Question: 3 boxes of 4?\nAnswer:"
    g = scripted_generator(prompt, " <<3*4=13>> so #### 13")
    assert g.generate(prompt, max_tokens=40) == " <<3*4=13>> so #### 13"
    pieces = list(g.stream(prompt, max_tokens=40, calculator=True))
    assert "".join(p.text for p in pieces) == " <<3*4=12>> so #### 13"
    # a verifier: the model's "1" was right and stays its own; the calculator took over at the "3"
    assert [p.text for p in pieces if p.source == "calculator"] == ["2>>"]
    assert g.last_stats["calculator_spans"] == 1  # one correction
    # calculator_mode "write": the calculator writes the whole result, as before
    pieces = list(g.stream(prompt, max_tokens=40, calculator=True, calculator_mode="write"))
    assert [p.text for p in pieces if p.source == "calculator"] == ["12>>"]
    # not computable: the model's own text stays
    g2 = scripted_generator(prompt, " <<x*4=13>> ok")
    assert g2.generate(prompt, max_tokens=40, calculator=True) == " <<x*4=13>> ok"


@pytest.mark.parametrize("mode", ["verify", "write"])
def test_calculator_keeps_the_models_spelling_of_a_right_result(mode: str) -> None:
    prompt = "Q\nA:"
    g = scripted_generator(prompt, " <<18*.5=9.00>> and <<1/2=.5>> and <<7-9=-2>> ok")
    text = g.generate(prompt, max_tokens=60, calculator=True, calculator_mode=mode)
    if mode == "verify":  # GSM8K's own spelling stays: no correction at all
        assert text == " <<18*.5=9.00>> and <<1/2=.5>> and <<7-9=-2>> ok"
        assert not [p for p in g.stream(prompt, max_tokens=60, calculator=True) if p.source == "calculator"]
    else:  # the calculator's spelling replaces it (and the scripted model runs on out of step)
        assert text.startswith(" <<18*.5=9>>")
    assert g.generate_batch([prompt, prompt], max_tokens=60, calculator=True, calculator_mode=mode) == [
        text,
        text,
    ]


def test_calculator_in_batches_matches_one_by_one() -> None:
    prompt = "Q\nA:"
    g = scripted_generator(prompt, " <<6/4=9.9>> then <<2*(3+1)=7>> end")
    single = g.generate(prompt, max_tokens=60, calculator=True)
    assert single == " <<6/4=1.5>> then <<2*(3+1)=8>> end"
    assert g.generate_batch([prompt, prompt], max_tokens=60, calculator=True) == [single, single]


def test_eos_ends_generation() -> None:
    prompt = "Q:"
    g = scripted_generator(prompt, " 42")
    assert g.generate(prompt, max_tokens=50) == " 42"
    assert g.generate_batch([prompt, prompt], max_tokens=50) == [" 42", " 42"]


# --------------------------------------------------------------------------- CUDA graphs


@pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA graphs need a GPU")
@pytest.mark.parametrize(("arch", "S"), CONFIGS)
def test_cuda_graph_equals_eager(arch: str, S: int) -> None:
    g = tiny_generator(arch, S)
    g.model.cuda()
    eager = Generator(g.model, g.tokenizer, depth=Depth(S), device="cuda", cuda_graph=False)
    graph = Generator(
        g.model, g.tokenizer, depth=Depth(S), device="cuda", cuda_graph=True, compile_step=False
    )
    for prompt in PROMPTS:
        assert graph.generate(prompt, max_tokens=24) == eager.generate(prompt, max_tokens=24)
    assert graph._graph is not None
    assert graph.generate_batch(PROMPTS, max_tokens=16) == eager.generate_batch(PROMPTS, max_tokens=16)
    assert graph.generate("Answer: <<2+3*4=", max_tokens=12, calculator=True) == eager.generate(
        "Answer: <<2+3*4=", max_tokens=12, calculator=True
    )


@pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA graphs need a GPU")
def test_compiled_cuda_graph_equals_eager() -> None:
    g = tiny_generator("trm", 2)
    g.model.cuda()
    eager = Generator(g.model, g.tokenizer, depth=Depth(2), device="cuda", cuda_graph=False)
    compiled = Generator(g.model, g.tokenizer, depth=Depth(2), device="cuda", compile_step=True)
    assert compiled.compile_step
    for prompt in PROMPTS:
        assert compiled.generate(prompt, max_tokens=24) == eager.generate(prompt, max_tokens=24)
    assert compiled.generate_batch(PROMPTS, max_tokens=16) == eager.generate_batch(PROMPTS, max_tokens=16)


# --------------------------------------------------------------------------- inference dtype


def test_bf16_greedy_decoding_runs_on_cpu() -> None:
    g = tiny_generator("trm", 2, dtype="bf16")
    assert next(g.model.parameters()).dtype == torch.bfloat16
    assert not g.compile_step  # compiling the step is a CUDA option
    text = g.generate(PROMPTS[0], max_tokens=12)
    assert len(g.tokenizer.pushed[-1]) > 0 and isinstance(text, str)
    assert g.generate(PROMPTS[0], max_tokens=12) == text  # greedy is deterministic in bf16 too
    batch = g.generate_batch(PROMPTS, max_tokens=8)
    assert len(batch) == len(PROMPTS)
    sampled = g.generate(PROMPTS[1], max_tokens=8, temperature=0.8, seed=1)
    assert sampled == g.generate(PROMPTS[1], max_tokens=8, temperature=0.8, seed=1)


def test_inference_dtype_defaults() -> None:
    from trm_core.errors import UserError
    from trm_core.runs.inference import resolve_inference_dtype

    assert resolve_inference_dtype("auto", "cpu") == torch.float32
    assert resolve_inference_dtype(None, "cuda") == torch.bfloat16
    assert resolve_inference_dtype("fp32", "cuda") == torch.float32
    assert resolve_inference_dtype("bf16", "cpu") == torch.bfloat16
    with pytest.raises(UserError, match="unknown inference dtype"):
        resolve_inference_dtype("fp8", "cpu")


def test_checkpoint_loads_fp32_on_cpu_unless_told(run_dir: Any) -> None:
    from trm_core.runs.inference import load_for_inference

    assert next(load_for_inference(run_dir, device="cpu").model.parameters()).dtype == torch.float32
    gen = Generator.from_checkpoint(run_dir, device="cpu")
    assert next(gen.model.parameters()).dtype == torch.float32 and not gen.compile_step
    bf16 = Generator.from_checkpoint(run_dir, device="cpu", dtype="bf16")
    assert next(bf16.model.parameters()).dtype == torch.bfloat16
    assert isinstance(bf16.generate("Question: 1+1?\nAnswer:", max_tokens=4), str)


# --------------------------------------------------------------------------- CLI `trm-tui generate`

TINY_PROFILE = """\
name = "tiny"
[model]
arch = "trm"
hidden_size = 32
num_heads = 4
num_layers = 1
H_cycles = 1
L_cycles = 2
[tokenizer]
name = "byte"
[data]
source = "synthetic"
synthetic_size = 50
[train]
supervision_steps = 2
[generate]
max_tokens = 6
calculator = true
"""


def make_checkpoint(run_dir: Any, step: int = 3) -> Any:
    """A run directory with one checkpoint of a random tiny model (as the trainer lays it out)."""
    from trm_core.profile import parse_profile
    from trm_core.runs.checkpoint import save_checkpoint

    profile = parse_profile(TINY_PROFILE)
    torch.manual_seed(0)
    model = build_model(profile.model, 258)
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "profile.toml").write_text(TINY_PROFILE)
    return save_checkpoint(
        run_dir, step, model_state=model.state_dict(), ema_state=None, optimizer_payload={},
        state={"vocab_size": 258}, profile_text=TINY_PROFILE, is_best=True, keep_last=2,
    )  # fmt: skip


@pytest.fixture
def run_dir(tmp_path: Any) -> Any:
    make_checkpoint(tmp_path / "runs" / "tiny")
    return tmp_path / "runs" / "tiny"


def cli(*argv: str) -> int:
    from trm_tui.__main__ import main

    return main([str(a) for a in argv])


def test_cli_generate_matches_the_library(run_dir: Any, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli("generate", run_dir, "--prompt", "What is 2+3?", "--device", "cpu") == 0
    out = capsys.readouterr().out
    g = Generator.from_checkpoint(run_dir, device="cpu")
    assert g.depth.supervision_steps == 2 and g.defaults.max_tokens == 6 and g.defaults.calculator
    from trm_tui.commands.generate import printable

    assert out == printable(g.generate("Question: What is 2+3?\nAnswer:")) + "\n"
    # flags override the profile; --raw sends the text as is
    assert (
        cli("generate", run_dir, "--prompt", "<<2+3*4=", "--raw", "--max-tokens", "4", "--no-kv-cache") == 0
    )
    assert capsys.readouterr().out.startswith("14>>")
    assert cli("generate", run_dir, "--prompt", "<<2+3*4=", "--raw", "--no-calculator") == 0
    assert not capsys.readouterr().out.startswith("14>>")
    assert cli("generate", run_dir, "--prompt", "<<2+3*4=", "--raw", "--dtype", "bf16") == 0
    assert capsys.readouterr().out.startswith("14>>")  # the calculator works in bf16 too


def test_cli_generate_bad_prompts(run_dir: Any, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli("generate", run_dir, "--prompt", "   ") == 1
    err = capsys.readouterr().err
    assert err.startswith("trm-tui: ") and err.count("\n") == 1
    for prompt in ["caf\udce9 \x1b[2J\x07", "x" * 100_000]:
        assert cli("generate", run_dir, "--prompt", prompt, "--max-tokens", "2") == 0
    captured = capsys.readouterr()
    assert "only its last" in captured.err
    assert "\x1b" not in captured.out and "\x07" not in captured.out
    assert cli("generate", run_dir, "--prompt", "hi", "--top-p", "0") == 1
    assert capsys.readouterr().err.startswith("trm-tui: sampling needs")


def test_cli_generate_missing_or_corrupt_checkpoint(
    tmp_path: Any, run_dir: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli("generate", tmp_path / "nope", "--prompt", "hi") == 1
    assert capsys.readouterr().err.count("\n") == 1
    ckpt = next((run_dir / "checkpoints").glob("step-*"))
    (ckpt / "model.safetensors").write_bytes(b"garbage")
    assert cli("generate", run_dir, "--prompt", "hi") == 1
    err = capsys.readouterr().err
    assert err.startswith("trm-tui: ") and "corrupted" in err and err.count("\n") == 1


def test_cli_generate_repl_reads_lines_until_eof(
    run_dir: Any, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import io

    monkeypatch.setattr("sys.stdin", io.StringIO("What is 1+1?\n\nWhat is 2+2?\n"))
    assert cli("generate", run_dir, "--max-tokens", "3") == 0
    g = Generator.from_checkpoint(run_dir, device="cpu")
    expected = [
        g.generate("Question: What is 1+1?\nAnswer:", max_tokens=3),
        g.generate("Question: What is 2+2?\nAnswer:", max_tokens=3),
    ]
    from trm_tui.commands.generate import printable

    assert capsys.readouterr().out == "".join(printable(e) + "\n" for e in expected)
