"""LeRobot's transformers branch put back on stock transformers 4.57, for LeRobot's π₀ and π0.5 in the tests that run
them (DAGGER_LEROBOT_PYTHON). Imported in LeRobot's Python before its policies; where the branch itself is installed
(its `transformers.models.siglip.check` imports) it changes nothing.

The branch (installed from GitHub, out of reach here) carries openpi's `transformers_replace`; what LeRobot's π₀ and
π0.5 use of it, read off that and written here: its version check passes; RMSNorm takes `cond` and returns (y, gate),
the gate None for a plain norm (to stock layers, which do not unpack it, a plain norm's y is a tensor); a Gemma whose
config says `use_adarms` gets adaptive norms instead (no weight; `dense` gives scale, shift and gate from `cond`;
fp32 arithmetic); residual branches are gated; GemmaModel passes `adarms_cond` to its layers and final norm, does not
scale its input embeddings by sqrt(width), casts them to bf16 where its layers are bf16, and with a cache but
`use_cache=False` reads the cache without appending to it (sampling's denoising steps); SigLIP's image features are
not divided by sqrt(width), and its encoder gets its embeddings in its own dtype.
"""

import importlib.util
import sys
import types

import torch
from torch import nn


def _install() -> None:
    from transformers.cache_utils import DynamicCache
    from transformers.modeling_outputs import BaseModelOutputWithPast
    from transformers.models.gemma import modeling_gemma
    from transformers.models.paligemma import modeling_paligemma
    from transformers.models.siglip import modeling_siglip

    check = types.ModuleType("transformers.models.siglip.check")
    check.check_whether_transformers_replace_is_installed_correctly = lambda: True
    sys.modules[check.__name__] = check

    class PlainNormOut(torch.Tensor):
        """A plain norm's output: a tensor to stock layers, (y, None) to the branch's callers, which unpack it."""

        __torch_function__ = torch._C._disabled_torch_function_impl

        def __iter__(self):
            return iter((self.as_subclass(torch.Tensor), None))

    stock_norm = modeling_gemma.GemmaRMSNorm.forward

    def rms_norm(self, x, cond=None):
        if getattr(self, "dense", None) is None:
            return stock_norm(self, x).as_subclass(PlainNormOut)
        variance = torch.mean(torch.square(x.float()), dim=-1, keepdim=True)
        normed = x * torch.rsqrt(variance + self.eps)
        modulation = self.dense(cond)
        if x.dim() == 3:
            modulation = modulation[:, None]
        scale, shift, gate = torch.chunk(modulation, 3, dim=-1)
        normed = normed * (1 + scale.float()) + shift.float()
        return normed.to(x.dtype), gate.to(x.dtype)

    modeling_gemma.GemmaRMSNorm.forward = rms_norm

    def make_adaptive(norm, config):
        del norm.weight
        norm.dense = nn.Linear(config.adarms_cond_dim, 3 * config.hidden_size)
        nn.init.zeros_(norm.dense.weight)

    stock_layer_init = modeling_gemma.GemmaDecoderLayer.__init__

    def layer_init(self, config, layer_idx):
        stock_layer_init(self, config, layer_idx)
        if getattr(config, "use_adarms", False):
            make_adaptive(self.input_layernorm, config)
            make_adaptive(self.post_attention_layernorm, config)

    modeling_gemma.GemmaDecoderLayer.__init__ = layer_init

    stock_model_init = modeling_gemma.GemmaModel.__init__

    def model_init(self, config):
        stock_model_init(self, config)
        if getattr(config, "use_adarms", False):
            make_adaptive(self.norm, config)

    modeling_gemma.GemmaModel.__init__ = model_init

    stock_init_weights = modeling_gemma.GemmaPreTrainedModel._init_weights

    def init_weights(self, module):
        if getattr(module, "dense", None) is None or not isinstance(module, modeling_gemma.GemmaRMSNorm):
            stock_init_weights(self, module)  # an adaptive norm has no weight; its dense layer is a Linear

    modeling_gemma.GemmaPreTrainedModel._init_weights = init_weights

    def gated_residual(x, y, gate):
        return x + y if gate is None else x + y * gate

    modeling_gemma._gated_residual = gated_residual

    def layer_forward(self, hidden_states, attention_mask=None, position_ids=None, past_key_values=None,
                      use_cache=False, cache_position=None, position_embeddings=None, adarms_cond=None, **kwargs):
        normed, gate = self.input_layernorm(hidden_states, adarms_cond)
        attended, _ = self.self_attn(hidden_states=normed, attention_mask=attention_mask, position_ids=position_ids,
                                     past_key_values=past_key_values, use_cache=use_cache,
                                     cache_position=cache_position, position_embeddings=position_embeddings)
        hidden_states = gated_residual(hidden_states, attended, gate)
        normed, gate = self.post_attention_layernorm(hidden_states, adarms_cond)
        return gated_residual(hidden_states, self.mlp(normed), gate)

    modeling_gemma.GemmaDecoderLayer.forward = layer_forward

    class ReadOnlyCache:
        def __init__(self, cache):
            self.cache = cache

        def update(self, keys, values, layer_idx, cache_kwargs=None):
            cached_keys, cached_values = self.cache[layer_idx][:2]
            return torch.cat([cached_keys, keys], dim=2), torch.cat([cached_values, values], dim=2)

    def model_forward(self, input_ids=None, attention_mask=None, position_ids=None, past_key_values=None,
                      inputs_embeds=None, use_cache=None, adarms_cond=None, **kwargs):
        hidden = inputs_embeds
        if self.layers[0].self_attn.q_proj.weight.dtype == torch.bfloat16:
            hidden = hidden.to(torch.bfloat16)
        if use_cache and past_key_values is None:
            past_key_values = DynamicCache(config=self.config)
        cache = past_key_values if use_cache or past_key_values is None else ReadOnlyCache(past_key_values)
        position_embeddings = self.rotary_emb(hidden, position_ids)
        for layer in self.layers[: self.config.num_hidden_layers]:
            hidden = layer(hidden, attention_mask=attention_mask, position_ids=position_ids, past_key_values=cache,
                           use_cache=use_cache, position_embeddings=position_embeddings, adarms_cond=adarms_cond)
        hidden, _ = self.norm(hidden, adarms_cond)
        return BaseModelOutputWithPast(last_hidden_state=hidden, past_key_values=past_key_values if use_cache else None)

    modeling_gemma.GemmaModel.forward = model_forward

    def image_features(self, pixel_values):
        return self.multi_modal_projector(self.vision_tower(pixel_values).last_hidden_state)

    modeling_paligemma.PaliGemmaModel.get_image_features = image_features

    stock_encoder = modeling_siglip.SiglipEncoder.forward

    def encoder_forward(self, inputs_embeds, *args, **kwargs):
        dtype = self.layers[0].self_attn.q_proj.weight.dtype
        return stock_encoder(self, inputs_embeds.to(dtype), *args, **kwargs)

    modeling_siglip.SiglipEncoder.forward = encoder_forward


BRANCH = importlib.util.find_spec("transformers.models.siglip.check") is not None
"""LeRobot's transformers branch (or openpi's transformers_replace) is installed: nothing to put back"""
if not BRANCH:
    _install()
