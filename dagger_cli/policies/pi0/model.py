"""π₀ (Pi0): PaliGemma (SigLIP + Gemma 2B) prefix and a Gemma 300M action expert sharing attention, flow matching.

Parameters live in stock `transformers` modules (`PaliGemmaForConditionalGeneration`, `GemmaForCausalLM`) under
openpi's names (`paligemma_with_expert.paligemma...`, `paligemma_with_expert.gemma_expert...`, `action_in_proj`, ...),
so openpi/RLinf PyTorch checkpoints load key for key. The forward passes are our own: the stock Gemma and PaliGemma
forwards rescale embeddings in ways openpi does not, and their caches grow with every denoising step.

- prefix = image tokens (SigLIP → projector, unscaled) + language tokens (embedding × √width), bidirectional;
- suffix = state token (its own attention block) + action tokens (one block), attending to the whole prefix;
- each layer: both streams' Q/K/V are concatenated along the sequence, RoPE, GQA with one KV head, fp32 softmax,
  then each stream's own output projection, MLP and norms;
- sampling: the prefix runs once and its K/V are reused (never extended) for `num_steps` Euler steps from t=1 to 0;
- training: t ~ Beta(1.5, 1)·0.999 + 0.001, x_t = t·ε + (1−t)·a, loss = (ε − a − v_θ(x_t, t))² per element.

π0.5 (`Pi0Size.pi05`, openpi's `pi05=True`) differs in the suffix alone: no state token (the state, when the model
sees it, is text in the prompt), the action tokens are `action_in_proj(x_t)` without the time, and the time enters
through a time MLP (`time_mlp_in`, swish, `time_mlp_out`, swish) whose output conditions every RMSNorm of the action
expert: each predicts scale, shift and gate from it (`dense`, zero-initialised), normalises as `x̂·(1 + scale) +
shift`, and the gate scales that sub-layer's residual branch (the final norm's gate is unused).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from dagger_cli.policies.pi0.sizes import VARIANTS, GemmaSize, Pi0Size, SiglipSize  # noqa: F401

ATTENTION_MASK_VALUE = -2.3819763e38  # openpi's "minus infinity" for masked logits
KEEP_FP32 = (  # parameters openpi keeps in float32 when the transformers run in bfloat16 (substring match)
    "embeddings.patch_embedding",
    "embeddings.position_embedding",
    "input_layernorm",
    "post_attention_layernorm",
    "model.norm",
)


def _hf_configs(size: Pi0Size):
    from transformers import CONFIG_MAPPING

    def gemma_fields(g: GemmaSize) -> dict:
        return dict(
            hidden_size=g.width,
            intermediate_size=g.mlp_dim,
            num_attention_heads=g.num_heads,
            num_key_value_heads=g.num_kv_heads,
            head_dim=g.head_dim,
            num_hidden_layers=g.depth,
            vocab_size=size.vocab_size,
            hidden_activation="gelu_pytorch_tanh",
            rms_norm_eps=1e-6,
            rope_theta=10000.0,
        )

    vlm = CONFIG_MAPPING["paligemma"]()
    for key, value in gemma_fields(size.paligemma).items():
        setattr(vlm.text_config, key, value)
    s = size.siglip
    vision = vlm.vision_config
    vision.hidden_size, vision.num_hidden_layers, vision.intermediate_size = s.width, s.depth, s.mlp_dim
    vision.num_attention_heads, vision.patch_size, vision.image_size = s.num_heads, s.patch_size, s.image_size
    vision.projection_dim = size.paligemma.width
    vision.projector_hidden_act = "gelu_fast"
    vlm.projection_dim = size.paligemma.width
    vlm.image_token_index = size.vocab_size
    vlm.vocab_size = size.vocab_size
    expert = CONFIG_MAPPING["gemma"](**gemma_fields(size.expert))
    return vlm, expert


class PaliGemmaWithExpert(nn.Module):
    """Holds the two transformers (names as openpi's `PaliGemmaWithExpertModel`)."""

    def __init__(self, size: Pi0Size):
        super().__init__()
        from transformers import GemmaForCausalLM, PaliGemmaForConditionalGeneration

        vlm_config, expert_config = _hf_configs(size)
        self.paligemma = PaliGemmaForConditionalGeneration(vlm_config)
        self.gemma_expert = GemmaForCausalLM(expert_config)
        self.gemma_expert.model.embed_tokens = None  # the expert reads embeddings, never tokens

    @property
    def vision_tower(self) -> nn.Module:
        """SigLIP's embeddings/encoder/post_layernorm (transformers 4.x nests them under `.vision_model`)."""
        tower = self.paligemma.model.vision_tower
        return getattr(tower, "vision_model", tower)

    @property
    def projector(self) -> nn.Module:
        return self.paligemma.model.multi_modal_projector

    @property
    def language_model(self) -> nn.Module:
        return self.paligemma.model.language_model

    @property
    def expert_model(self) -> nn.Module:
        return self.gemma_expert.model


class AdaptiveRMSNorm(nn.Module):
    """π0.5's RMSNorm of the action expert, conditioned on the flow time: `dense(cond)` gives scale, shift and gate
    (no weight of its own). Returns (normalised x in x's dtype, gate in x's dtype); the arithmetic runs in fp32."""

    def __init__(self, dim: int, cond_dim: int, eps: float = 1e-6):
        super().__init__()
        self.eps = eps
        self.dense = nn.Linear(cond_dim, 3 * dim)
        nn.init.zeros_(self.dense.weight)

    def forward(self, x: torch.Tensor, cond: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        variance = torch.square(x.float()).mean(dim=-1, keepdim=True)
        normed = x * torch.rsqrt(variance + self.eps)
        scale, shift, gate = self.dense(cond)[:, None, :].chunk(3, dim=-1)
        normed = normed * (1 + scale.float()) + shift.float()
        return normed.to(x.dtype), gate.to(x.dtype)


def _norm(norm: nn.Module, x: torch.Tensor, cond: torch.Tensor | None):
    """(normalised x, gate): a plain RMSNorm has no gate (None)."""
    return (norm(x), None) if cond is None else norm(x, cond)


def _residual(x: torch.Tensor, branch: torch.Tensor, gate: torch.Tensor | None) -> torch.Tensor:
    return x + branch if gate is None else x + branch * gate


def sinusoidal_time_embedding(time: torch.Tensor, dim: int, min_period: float = 4e-3, max_period: float = 4.0):
    """openpi's timestep embedding: [sin, cos] of time / period over log-spaced periods, computed in float64."""
    dtype = torch.float64 if time.device.type != "mps" else torch.float32
    fraction = torch.linspace(0.0, 1.0, dim // 2, dtype=dtype, device=time.device)
    period = min_period * (max_period / min_period) ** fraction
    angle = (2 * math.pi / period)[None, :] * time.to(dtype)[:, None]
    return torch.cat([torch.sin(angle), torch.cos(angle)], dim=1)


def make_attention_2d(pad_masks: torch.Tensor, block_starts: torch.Tensor) -> torch.Tensor:
    """(B, N) validity and (B, N) block-start flags -> (B, N, N) bool: a token sees valid tokens of its own and
    earlier blocks (block_starts all 0 = fully bidirectional; all 1 = causal)."""
    cumsum = torch.cumsum(block_starts, dim=1)
    allowed = cumsum[:, None, :] <= cumsum[:, :, None]
    return allowed & (pad_masks[:, None, :] & pad_masks[:, :, None])


def _additive(mask_2d: torch.Tensor) -> torch.Tensor:
    """(B, Nq, Nk) bool -> (B, 1, Nq, Nk) fp32 additive mask (fp32 even in bf16: the scores are promoted)."""
    return torch.where(mask_2d[:, None], 0.0, ATTENTION_MASK_VALUE).to(torch.float32)


class Pi0Model(nn.Module):
    def __init__(self, size: Pi0Size):
        super().__init__()
        self.size = size
        ew = size.expert.width
        self.paligemma_with_expert = PaliGemmaWithExpert(size)
        self.action_in_proj = nn.Linear(size.action_dim, ew)
        self.action_out_proj = nn.Linear(ew, size.action_dim)
        if size.pi05:
            self.time_mlp_in = nn.Linear(ew, ew)
            self.time_mlp_out = nn.Linear(ew, ew)
            expert = self.paligemma_with_expert.expert_model
            for layer in expert.layers:
                layer.input_layernorm = AdaptiveRMSNorm(ew, ew)
                layer.post_attention_layernorm = AdaptiveRMSNorm(ew, ew)
            expert.norm = AdaptiveRMSNorm(ew, ew)
        else:
            self.state_proj = nn.Linear(size.action_dim, ew)
            self.action_time_mlp_in = nn.Linear(2 * ew, ew)
            self.action_time_mlp_out = nn.Linear(ew, ew)
        self.gradient_checkpointing = False

    # PRECISION
    def to_bfloat16_except_fp32_parts(self, vlm_only: bool = False) -> Pi0Model:
        """openpi's bf16 policy: the two transformers (their buffers too, so RoPE frequencies are bf16-rounded as in
        openpi) in bf16 except patch/position embeddings and RMSNorm weights (π0.5's adaptive ones: their dense
        projections), which keep their fp32 values as loaded; the action/state/time projections stay fp32.
        `vlm_only`: the PaliGemma half alone (a frozen VLM beside a trained action expert)."""
        pwe = self.paligemma_with_expert
        part = pwe.paligemma if vlm_only else pwe
        kept = {name: param.data.float() for name, param in part.named_parameters()
                if any(keep in name for keep in KEEP_FP32)}
        part.to(torch.bfloat16)
        for name, param in part.named_parameters():
            if name in kept:
                param.data = kept[name]
        return self

    @property
    def stream_dtypes(self) -> tuple[torch.dtype, torch.dtype]:
        """dtypes of the VLM and the action-expert layers: each stream's embeddings are cast to its own before the
        joint pass, so a frozen bf16 VLM leaves the trained expert's residual stream in fp32."""
        pwe = self.paligemma_with_expert
        return tuple(m.layers[0].self_attn.q_proj.weight.dtype for m in (pwe.language_model, pwe.expert_model))

    # EMBEDDINGS
    def embed_images(self, images: torch.Tensor) -> torch.Tensor:
        """(B, 3, 224, 224) in [-1, 1] -> (B, tokens, width). Patch and position embeddings in their own (fp32)
        dtype, the encoder in its dtype; openpi does not rescale image tokens."""
        tower = self.paligemma_with_expert.vision_tower
        x = tower.embeddings(images.to(tower.embeddings.patch_embedding.weight.dtype))
        x = x.to(tower.encoder.layers[0].self_attn.q_proj.weight.dtype)
        x = tower.post_layernorm(tower.encoder(inputs_embeds=x).last_hidden_state)
        projector = self.paligemma_with_expert.projector
        return projector(x.to(projector.linear.weight.dtype))

    def embed_prefix(self, images, image_masks, tokens, token_masks):
        """Images (B, K, 3, H, W), image masks (B, K), tokens (B, L), token masks (B, L) -> (embs, pad, blocks)."""
        embs, pads = [], []
        batch, cameras = image_masks.shape
        for k in range(cameras):
            if not bool(image_masks[:, k].any()):
                continue  # a slot masked in every sample adds nothing anyone attends to: not run through SigLIP
            emb = self.embed_images(images[:, k])
            embs.append(emb)
            pads.append(image_masks[:, k, None].expand(batch, emb.shape[1]))
        lm = self.paligemma_with_expert.language_model
        width = lm.embed_tokens.weight.shape[1]
        text = F.embedding(tokens, lm.embed_tokens.weight, padding_idx=0) * math.sqrt(width)
        embs.append(text.to(embs[0].dtype) if embs else text)
        pads.append(token_masks)
        embs = torch.cat(embs, dim=1)
        pads = torch.cat(pads, dim=1)
        blocks = torch.zeros_like(pads, dtype=torch.long)
        return embs, pads, blocks

    def embed_suffix(self, state: torch.Tensor, noisy_actions: torch.Tensor, time: torch.Tensor):
        """State (B, 32), x_t (B, H, 32), t (B,) -> suffix embeddings (B, 1 + H, width; π0.5: (B, H, width), no state
        token), pad masks, block starts, and the adaRMS condition (B, width) of π0.5's expert norms (π₀: None)."""
        dtype = self.action_in_proj.weight.dtype
        action_emb = self.action_in_proj(noisy_actions.to(dtype))
        time_emb = sinusoidal_time_embedding(time, self.action_in_proj.out_features).to(time.dtype)
        batch, horizon = noisy_actions.shape[:2]
        if self.size.pi05:
            cond = F.silu(self.time_mlp_out(F.silu(self.time_mlp_in(time_emb.to(dtype)))))
            pads = torch.ones(batch, horizon, dtype=torch.bool, device=action_emb.device)
            blocks = torch.zeros(batch, horizon, dtype=torch.long, device=action_emb.device)
            blocks[:, 0] = 1  # the action tokens open a block
            return action_emb, pads, blocks, cond
        state_emb = self.state_proj(state.to(dtype))[:, None]
        time_emb = time_emb[:, None, :].expand_as(action_emb).to(dtype)
        x = self.action_time_mlp_in(torch.cat([action_emb, time_emb], dim=2))
        x = self.action_time_mlp_out(F.silu(x))
        embs = torch.cat([state_emb, x], dim=1)
        pads = torch.ones(batch, 1 + horizon, dtype=torch.bool, device=embs.device)
        blocks = torch.zeros(batch, 1 + horizon, dtype=torch.long, device=embs.device)
        blocks[:, 0] = 1  # the state token opens a block
        blocks[:, 1] = 1  # the action tokens open another
        return embs, pads, blocks, None

    # JOINT TRANSFORMER
    def _layers(self):
        pwe = self.paligemma_with_expert
        return list(zip(pwe.language_model.layers, pwe.expert_model.layers))

    def _attend(self, layer_pair, hiddens, mask4d, cos, sin, cache_kv, conds):
        """One joint layer over the streams present in `hiddens` (None = absent); `conds`: each stream's adaRMS
        condition (None: plain RMSNorm). Returns (outputs, (k, v))."""
        from transformers.models.gemma.modeling_gemma import apply_rotary_pos_emb

        queries, keys, values, lengths, gates = [], [], [], [], []
        for layer, hidden, cond in zip(layer_pair, hiddens, conds):
            if hidden is None:
                gates.append(None)
                continue
            attn = layer.self_attn
            x, gate = _norm(layer.input_layernorm, hidden, cond)
            gates.append(gate)
            shape = (*x.shape[:-1], -1, attn.head_dim)
            queries.append(attn.q_proj(x).view(shape).transpose(1, 2))
            keys.append(attn.k_proj(x).view(shape).transpose(1, 2))
            values.append(attn.v_proj(x).view(shape).transpose(1, 2))
            lengths.append(hidden.shape[1])
        q = torch.cat(queries, dim=2)
        k = torch.cat(keys, dim=2)
        v = torch.cat(values, dim=2)
        q, k = apply_rotary_pos_emb(q, k, cos, sin)
        new_kv = (k, v)
        if cache_kv is not None:
            k = torch.cat([cache_kv[0], k], dim=2)
            v = torch.cat([cache_kv[1], v], dim=2)
        attn0 = layer_pair[0].self_attn
        groups = q.shape[1] // k.shape[1]
        k_rep = k.repeat_interleave(groups, dim=1)
        v_rep = v.repeat_interleave(groups, dim=1)
        scores = torch.matmul(q, k_rep.transpose(2, 3)) * attn0.scaling + mask4d
        probs = torch.softmax(scores, dim=-1, dtype=torch.float32).to(q.dtype)
        out = torch.matmul(probs, v_rep).transpose(1, 2)
        out = out.reshape(*out.shape[:2], -1)

        outputs, start = [], 0
        for layer, hidden, cond, gate in zip(layer_pair, hiddens, conds, gates):
            if hidden is None:
                outputs.append(None)
                continue
            n = hidden.shape[1]
            part = out[:, start : start + n].to(layer.self_attn.o_proj.weight.dtype)
            start += n
            h = _residual(hidden, layer.self_attn.o_proj(part), gate)
            x, gate = _norm(layer.post_attention_layernorm, h, cond)
            h = _residual(h, layer.mlp(x), gate)
            outputs.append(h)
        return outputs, new_kv

    def run(self, prefix, suffix, mask2d, positions, cache=None, keep_cache=False, cond=None):
        """Runs the joint transformer on prefix and/or suffix embeddings. `cache` = per-layer prefix (k, v) to attend
        to; `keep_cache` returns this call's per-layer (k, v); `cond`: π0.5's adaRMS condition of the action expert.
        Returns ((prefix_out, suffix_out), cache)."""
        pwe = self.paligemma_with_expert
        hiddens = [prefix, suffix]
        conds = [None, cond]
        ref = prefix if prefix is not None else suffix
        mask4d = _additive(mask2d)
        cos, sin = pwe.language_model.rotary_emb(ref, positions)
        new_cache = []
        for i, pair in enumerate(self._layers()):
            layer_cache = cache[i] if cache is not None else None
            if self.gradient_checkpointing and self.training:
                hiddens, kv = torch.utils.checkpoint.checkpoint(
                    self._attend, pair, hiddens, mask4d, cos, sin, layer_cache, conds, use_reentrant=False
                )
            else:
                hiddens, kv = self._attend(pair, hiddens, mask4d, cos, sin, layer_cache, conds)
            if keep_cache:
                new_cache.append(kv)
        norms = (pwe.language_model.norm, pwe.expert_model.norm)
        outs = [_norm(norm, h, c)[0] if h is not None else None for norm, h, c in zip(norms, hiddens, conds)]
        return outs, (new_cache if keep_cache else None)

    # FLOW MATCHING
    def _velocity(self, suffix_out: torch.Tensor) -> torch.Tensor:
        out = suffix_out[:, -self.size.action_horizon :].to(self.action_out_proj.weight.dtype)
        return self.action_out_proj(out).float()

    def loss(self, images, image_masks, tokens, token_masks, state, actions, noise=None, time=None) -> torch.Tensor:
        """Per-element flow-matching loss (B, horizon, action_dim) for normalised, padded `actions`. `noise` and
        `time` may hold K draws per observation (B·K rows, an observation's K draws together): the prefix then runs
        once, every draw's suffix attends to its keys and values, and an element's loss is the mean over the draws
        (K = 1: openpi's joint pass)."""
        batch = actions.shape[0]
        if noise is None:
            noise = torch.randn_like(actions, dtype=torch.float32)
        if time is None:
            beta = torch.distributions.Beta(torch.tensor(1.5), torch.tensor(1.0))
            time = (beta.sample((batch,)) * 0.999 + 0.001).to(actions.device)
        draws = noise.shape[0] // batch
        if draws > 1:
            actions, state = actions.repeat_interleave(draws, dim=0), state.repeat_interleave(draws, dim=0)
        t = time[:, None, None]
        x_t = t * noise + (1 - t) * actions
        target = noise - actions
        suffix, suffix_pad, suffix_blocks, cond = self.embed_suffix(state, x_t, time)
        suffix = suffix.to(self.stream_dtypes[1])
        if draws == 1:
            prefix, prefix_pad, prefix_blocks = self.embed_prefix(images, image_masks, tokens, token_masks)
            prefix = prefix.to(self.stream_dtypes[0])
            pads = torch.cat([prefix_pad, suffix_pad], dim=1)
            blocks = torch.cat([prefix_blocks, suffix_blocks], dim=1)
            mask2d = make_attention_2d(pads, blocks)
            positions = torch.cumsum(pads.long(), dim=1) - 1
            (_, suffix_out), _ = self.run(prefix, suffix, mask2d, positions, cond=cond)
        else:
            cache, prefix_pad = self.prefix_cache(images, image_masks, tokens, token_masks, draws)
            mask2d, positions = _suffix_after_prefix(prefix_pad, suffix_pad, suffix_blocks)
            (_, suffix_out), _ = self.run(None, suffix, mask2d, positions, cache=cache, cond=cond)
        errors = F.mse_loss(target, self._velocity(suffix_out), reduction="none")
        return errors if draws == 1 else errors.view(batch, draws, *errors.shape[1:]).mean(dim=1)

    def prefix_cache(self, images, image_masks, tokens, token_masks, draws: int = 1):
        """The prefix (cameras, prompt) run once: per-layer keys and values and its pad mask, each repeated for
        `draws` suffixes per observation (B·draws rows, an observation's together)."""
        prefix, prefix_pad, prefix_blocks = self.embed_prefix(images, image_masks, tokens, token_masks)
        prefix = prefix.to(self.stream_dtypes[0])
        prefix_mask = make_attention_2d(prefix_pad, prefix_blocks)
        prefix_positions = torch.cumsum(prefix_pad.long(), dim=1) - 1
        _, cache = self.run(prefix, None, prefix_mask, prefix_positions, keep_cache=True)
        if draws > 1:
            cache = [tuple(t.repeat_interleave(draws, dim=0) for t in kv) for kv in cache]
            prefix_pad = prefix_pad.repeat_interleave(draws, dim=0)
        return cache, prefix_pad

    @torch.no_grad()
    def sample_actions(self, images, image_masks, tokens, token_masks, state, noise, num_steps: int = 10,
                       rounded_times: bool = False):
        """Euler integration of the flow from noise (B, horizon, action_dim) at t=1 to actions at t=0. The step
        times are openpi's, t += dt in fp32, or with `rounded_times` LeRobot's, t = 1 + k·dt rounded to fp32 once;
        they differ by an ulp here and there, which the time embedding's 4 ms period turns into ~1e-5 of the
        actions. `noise` may hold several draws per observation (B·K rows, an observation's K draws together): the
        prefix is then run once per observation and its keys and values repeated for each draw."""
        draws = noise.shape[0] // state.shape[0]
        cache, prefix_pad = self.prefix_cache(images, image_masks, tokens, token_masks, draws)
        if draws > 1:
            state = state.repeat_interleave(draws, dim=0)

        batch = noise.shape[0]
        dt = -1.0 / num_steps
        x_t = noise.float()
        time = torch.tensor(1.0, dtype=torch.float32, device=noise.device)
        for step in range(num_steps):
            if rounded_times:
                time = torch.tensor(1.0 + step * dt, dtype=torch.float32, device=noise.device)
            suffix, suffix_pad, suffix_blocks, cond = self.embed_suffix(state, x_t, time.expand(batch))
            suffix = suffix.to(self.stream_dtypes[1])
            mask2d, positions = _suffix_after_prefix(prefix_pad, suffix_pad, suffix_blocks)
            (_, suffix_out), _ = self.run(None, suffix, mask2d, positions, cache=cache, cond=cond)
            x_t = x_t + dt * self._velocity(suffix_out)
            time = time + dt
        return x_t


def _suffix_after_prefix(prefix_pad: torch.Tensor, suffix_pad: torch.Tensor, suffix_blocks: torch.Tensor):
    """(mask2d, positions) of a suffix run against a cached prefix: each suffix token sees the prefix's real tokens
    and the suffix as its blocks allow, and its positions continue after the prefix's real tokens."""
    batch, length = suffix_pad.shape
    to_prefix = prefix_pad[:, None, :].expand(batch, length, prefix_pad.shape[1])
    mask2d = torch.cat([to_prefix, make_attention_2d(suffix_pad, suffix_blocks)], dim=2)
    positions = prefix_pad.long().sum(dim=1, keepdim=True) + torch.cumsum(suffix_pad.long(), dim=1) - 1
    return mask2d, positions


def parameter_count(size: Pi0Size) -> int:
    """Distinct parameters of a π₀ of this size (built on the meta device: no memory, no time)."""
    with torch.device("meta"):
        model = Pi0Model(size)
    return sum(p.numel() for p in model.parameters())


def apply_precision(model: Pi0Model, precision: str, trainable: bool, train_expert_only: bool) -> bool:
    """Stores `model` as the precision policy says; returns whether its passes run under bf16 autocast.

    float32: everything fp32, no autocast. bfloat16: a model that trains keeps fp32 master weights (AdamW's moments
    follow them) and runs its forward and backward passes under bf16 autocast, as openpi's and LeRobot's trainers
    do; a VLM it does not train (`train_expert_only`) is stored in bf16. A model that never trains (an expert) is
    stored in openpi's bf16 policy and runs without autocast.
    """
    if precision != "bfloat16":
        return False
    if not trainable:
        model.to_bfloat16_except_fp32_parts()
        return False
    if train_expert_only:
        model.to_bfloat16_except_fp32_parts(vlm_only=True)
    return True


def trained_parameters(model: Pi0Model, train_expert_only: bool):
    """(name, parameter) pairs that get gradients: all but the never-used expert lm_head, and not the VLM when
    `train_expert_only`."""
    for name, param in model.named_parameters():
        if "gemma_expert.lm_head" in name:
            continue
        if train_expert_only and name.startswith("paligemma_with_expert.paligemma."):
            continue
        yield name, param


def memory_estimate_gib(size: Pi0Size, precision: str, train_expert_only: bool, trainable: bool) -> tuple[float, float]:
    """(weights as `apply_precision` stores them, the same + a gradient in the parameter's dtype and two fp32 AdamW
    moments per trained parameter), in GiB, for a student (`trainable`) or an expert; activations come on top and
    grow with the micro-batch."""
    with torch.device("meta"):
        model = Pi0Model(size)
    apply_precision(model, precision, trainable=trainable, train_expert_only=train_expert_only)
    weights = sum(p.numel() * p.element_size() for p in model.parameters())
    training = weights
    if trainable:
        training += sum(p.numel() * (p.element_size() + 8) for _, p in trained_parameters(model, train_expert_only))
    return weights / 2**30, training / 2**30
