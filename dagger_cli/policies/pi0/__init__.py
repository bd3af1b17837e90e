"""π₀ / π0.5 policy adapter (`model_type: pi0`, `pi0.pi05` for π0.5; extra `pi0`): openpi-compatible model,
transforms, tokenizer and checkpoints. The policy is `policy.Pi0Policy`; this module stays light (no torch) for the
registry."""

from __future__ import annotations

from dagger_cli.core.registry import Alias, PolicyAdapter
from dagger_cli.policies.pi0.config import Pi0Config, Pi0ModelConfig  # noqa: F401
from dagger_cli.policies.pi0.downloads import CHECKPOINT, EXPERT_KEY, MODEL_KEY, TOKENIZER, TOKENIZER_KEY

FETCH_ALIASES = (
    Alias("pi0-libero", "RLinf/RLinf-Pi0-LIBERO-Spatial-Object-Goal-SFT",
          "π₀ student for libero-spatial, libero-object and libero-goal", MODEL_KEY, CHECKPOINT),
    Alias("pi0-libero-long", "RLinf/RLinf-Pi0-LIBERO-Long-SFT", "π₀ student for libero-10", MODEL_KEY, CHECKPOINT),
    Alias("pi0-robotwin", "RLinf/RLinf-Pi0-RoboTwin-SFT-adjust_bottle", "π₀ student for robotwin-adjust-bottle",
          MODEL_KEY, CHECKPOINT),
    Alias("pi0-robotwin-expert", "RLinf/RLinf-Pi0-RoboTwin-PPO-adjust_bottle", "π₀ expert for robotwin-adjust-bottle",
          EXPERT_KEY, CHECKPOINT),
    Alias("pi05-libero-expert", "lerobot/pi05_libero_finetuned",
          "π0.5 expert for libero-spatial-pi05 (LeRobot's layout; LIBERO-Spatial 97% in LeRobot's docs)", EXPERT_KEY,
          CHECKPOINT),
    Alias("pi05-libero-rlinf", "RLinf/RLinf-Pi05-LIBERO-SFT",
          "RLinf's few-shot π0.5 LIBERO SFT (openpi's layout; pi0.pi05=true, action_horizon=10)", MODEL_KEY,
          CHECKPOINT),
    Alias("openpi-tokenizer", "RLinf/openpi_tokenizer", "PaliGemma SentencePiece tokenizer", TOKENIZER_KEY,
          TOKENIZER),
)


def student(cfg, device: str, weights):
    from dagger_cli.policies.pi0.policy import Pi0Policy

    policy = Pi0Policy(cfg.actor.model, device)
    if weights:
        policy.load_weights(weights)
    return policy


def expert(cfg, device: str):
    from dagger_cli.policies.pi0.policy import Pi0Policy

    return Pi0Policy(cfg.rollout.expert_model, device, trainable=False)


def describe(model: Pi0ModelConfig, policy, device: str, is_student: bool) -> str:
    """The memory the model takes as `apply_precision` stores it (what `dagger check` prints); on a CPU, where a
    model too large to use there (a full-size π₀) makes the line a `CheckWarning`, the estimated cost of a rollout
    chunk and of a learner step (from the model's FLOPs and this CPU's measured matmul speed)."""
    from dagger_cli.core.registry import CheckWarning
    from dagger_cli.policies.pi0.config import model_name
    from dagger_cli.policies.pi0.model import memory_estimate_gib

    p = model.pi0
    precision = p.precision if p.precision != "auto" else ("bfloat16" if device == "cuda" else "float32")
    weights, total = memory_estimate_gib(_size_of(model, policy), precision, p.train_expert_only, trainable=is_student)
    how = ""
    if precision == "bfloat16":
        how = " (fp32 master weights, bf16 autocast)" if is_student else " (stored in bf16)"
    text = f"{p.variant} {model_name(p.pi05)} in {precision}{how}: weights {_size(weights)}"
    if is_student:
        part = "action expert" if p.train_expert_only else "all"
        text += f", training ({part}) ≈{_size(total)} + activations"
    if getattr(policy, "needs_norm_stats", False):
        text += "; no norm stats: computed from the first iterations' expert labels (actor.norm_stats_iterations)"
    transforms = getattr(policy, "transforms", None)
    if transforms is not None and transforms.spec_delta_dims():
        from dagger_cli.policies.pi0.transforms import dims_text

        delta = transforms.delta_dims()
        absolute = "openpi's π0.5 convention" if policy.openpi_convention == "absolute" else "LeRobot's convention"
        text += (f"; actions relative to the state on dims {dims_text(delta)} (openpi's convention)" if delta
                 else f"; absolute actions ({absolute})")
        if p.pi05:
            norm = "quantile" if transforms.quantiles else "mean/std"
            text += f"; {norm} norm stats; state {'in the prompt' if policy.state_tokens else 'not seen'}"
    if str(device).split(":")[0] == "cpu":
        act, train = pi0_flops(model, _size_of(model, policy))
        speed = cpu_matmul_flops("bfloat16" if precision == "bfloat16" else "float32")
        if max(act, train if is_student else 0.0) / speed > CPU_SECONDS_WARNING:
            text += (f"; too slow to use on this CPU: ≈{_seconds(act / speed)} per env for a rollout chunk "
                     f"({_flops(act)} per observation, {p.num_steps} denoising steps)")
            if is_student:
                text += (f", ≈{_seconds(train / speed)} per sample of a learner step (× actor.global_batch_size; "
                         f"{_flops(train)} forward + backward)")
            text += (f"; estimated as FLOPs ÷ this CPU's measured {_flops(speed)}/s ({precision} matmul); "
                     f"run it on a GPU (runner.device=cuda)")
            return CheckWarning(text)
    return text


def _size_of(model: Pi0ModelConfig, policy=None):
    """The model's size: the built policy's where there is one (its horizon may come from a LeRobot checkpoint),
    else the config's."""
    from dagger_cli.policies.pi0.sizes import model_size

    built = getattr(getattr(policy, "model", None), "size", None)
    return built or model_size(model.pi0.variant, model.pi0.pi05, model.pi0.action_horizon)


CPU_SECONDS_WARNING = 1.0
"""`dagger check` warns when one observation (or one training sample) of a model would take longer on the CPU"""


def pi0_flops(model: Pi0ModelConfig, size=None) -> tuple[float, float]:
    """Estimated FLOPs (multiply-adds × 2) of (one observation's action chunk: SigLIP on each camera, the VLM on the
    prefix, `num_steps` action-expert passes; one training sample: SigLIP, VLM and one expert pass forward, backward
    ≈ 2 × forward of what trains, + 1 forward of it under gradient checkpointing). From the size table (`size`:
    the config's unless given): the layers' matmuls and attention (π0.5's adaRMS projections counted as the
    suffix's projections); norms, softmax and the like are left out."""
    from dagger_cli.policies.pi0.config import token_len
    from dagger_cli.policies.pi0.transforms import DATA_SPECS

    p = model.pi0
    size = size or _size_of(model)
    vlm, expert, sig = size.paligemma, size.expert, size.siglip
    cameras = sum(key is not None for key in DATA_SPECS[p.data].cameras)
    patches = (sig.image_size // sig.patch_size) ** 2
    prefix = cameras * patches + token_len(p)
    suffix = size.action_horizon + (0 if size.pi05 else 1)  # the action tokens; π₀'s state token

    def gemma(g, queries: int, keys: int) -> float:
        attn = g.width * g.num_heads * g.head_dim * 2 + g.width * g.num_kv_heads * g.head_dim * 2
        weights = attn + 3 * g.width * g.mlp_dim
        return g.depth * (2 * queries * weights + 4 * queries * keys * g.num_heads * g.head_dim)

    layer = 4 * sig.width * sig.width + 2 * sig.width * sig.mlp_dim
    per_token = sig.depth * layer + 3 * sig.patch_size**2 * sig.width + sig.width * vlm.width
    siglip = cameras * (2 * patches * per_token + 4 * patches * patches * sig.width * sig.depth)
    projections = 2 * suffix * (3 * size.action_dim * expert.width + 3 * expert.width * expert.width)
    if size.pi05:  # per sample, not per token: the time MLP and each expert norm's scale/shift/gate projection
        projections = 2 * (2 * size.action_dim * expert.width * suffix
                           + (2 + 3 * (2 * expert.depth + 1)) * expert.width * expert.width)
    one_pass = gemma(expert, suffix, prefix + suffix) + projections
    prefix_flops = siglip + gemma(vlm, prefix, prefix)
    act = prefix_flops + p.num_steps * one_pass
    backward = 2 + int(p.gradient_checkpointing)
    train = (prefix_flops + one_pass) + backward * (one_pass + (0 if p.train_expert_only else prefix_flops))
    return float(act), float(train)


_MATMUL_SPEED: dict[str, float] = {}


def cpu_matmul_flops(dtype: str = "float32") -> float:
    """FLOP/s of a 1024² matmul on this CPU with torch's threads (measured once per dtype, ≈0.2 s)."""
    if dtype not in _MATMUL_SPEED:
        import time

        import torch

        n = 1024
        a = torch.randn(n, n, dtype=getattr(torch, dtype))
        b = torch.randn(n, n, dtype=getattr(torch, dtype))
        a @ b
        reps, start = 0, time.perf_counter()
        while reps < 2 or time.perf_counter() - start < 0.2:
            a @ b
            reps += 1
        _MATMUL_SPEED[dtype] = 2 * n**3 * reps / (time.perf_counter() - start)
    return _MATMUL_SPEED[dtype]


def _seconds(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s" if seconds >= 10 else f"{seconds:.1f} s"
    return f"{seconds / 60:.0f} min" if seconds < 7200 else f"{seconds / 3600:.1f} h"


def _flops(flops: float) -> str:
    for unit, scale in (("PFLOP", 1e15), ("TFLOP", 1e12), ("GFLOP", 1e9), ("MFLOP", 1e6)):
        if flops >= scale:
            return f"{flops / scale:.1f} {unit}"
    return f"{flops:.0f} FLOP"


def _size(gib: float) -> str:
    return f"{gib:.1f} GiB" if gib >= 1 else f"{gib * 1024:.0f} MiB"


def __getattr__(name: str):
    if name in ("Pi0Policy", "resolve_precision"):
        from dagger_cli.policies.pi0 import policy

        return getattr(policy, name)
    raise AttributeError(name)


def weight_bytes(model: Pi0ModelConfig) -> int:
    """The student's state dict at most (fp32, as a student keeps its master weights)."""
    from dagger_cli.policies.pi0.model import memory_estimate_gib

    weights, _ = memory_estimate_gib(_size_of(model), "float32", model.pi0.train_expert_only, True)
    return int(weights * 2**30)


def export(policy, model: Pi0ModelConfig, directory, fmt: str):
    """`checkpoint`: openpi's layout (model.safetensors + <asset_id>/norm_stats.json); `lerobot-checkpoint`:
    LeRobot's `save_pretrained` layout (config.json, weights under `model.`, normaliser files)."""
    return policy.save_lerobot(directory) if fmt == "lerobot-checkpoint" else policy.save(directory).parent


ADAPTER = PolicyAdapter("pi0", Pi0ModelConfig, student, expert, describe=describe, weight_bytes=weight_bytes,
                        export=export, export_formats=("checkpoint", "lerobot-checkpoint"),
                        worker_env=("OPENPI_DATA_HOME",), fetch_aliases=FETCH_ALIASES,
                        download_kinds=(CHECKPOINT, TOKENIZER))
