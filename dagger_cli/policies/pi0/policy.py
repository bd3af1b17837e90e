"""π₀ and π0.5 as a dagger policy: raw observations in, env-unit action chunks out, trained with the flow-matching
loss."""

from __future__ import annotations

import contextlib
from pathlib import Path

import numpy as np
import torch

from dagger_cli.core.errors import CheckpointError, EnvUnavailableError, UsageError


CONVENTION_KEY = "action_convention/delta"
"""a state dict's record of its convention (1: delta, 0: absolute), so run checkpoints and Ray weights keep it"""


def layout_convention(path: Path | None, openpi: str = "delta") -> str:
    """The action convention a checkpoint directory's layout implies: `absolute` for LeRobot's, `openpi` (what
    openpi's config for the model and data trains: π₀ delta, π0.5 on LIBERO absolute) for openpi's and RLinf's, and
    for no checkpoint (a new model trains in openpi's convention)."""
    from dagger_cli.policies.pi0 import lerobot

    return "absolute" if path is not None and path.is_dir() and lerobot.is_lerobot(path) else openpi


def _require_transformers():
    try:
        import sentencepiece  # noqa: F401
        import transformers  # noqa: F401
    except ImportError as e:
        raise EnvUnavailableError(
            f"π₀ needs {e.name}; install it with: pip install 'dagger-cli[pi0]'"
        ) from None


def resolve_precision(precision: str, device: torch.device) -> str:
    """`auto` -> bfloat16 on CUDA, float32 elsewhere."""
    if precision == "auto":
        return "bfloat16" if device.type == "cuda" else "float32"
    return precision


class Pi0Policy:
    """`TrainablePolicy` around `Pi0Model` (π₀, or π0.5 with `pi0.pi05`): raw observations in, env-unit action
    chunks (full horizon) out.

    Observations: a dict with the cameras named by the data spec (uint8 (B, H, W, 3)), `state` (B, S) and
    `prompt` (B,) strings, or a bare state array (B, S) with `pi0.default_prompt` as every prompt. `act` returns
    (B, horizon, action_dim); the env executes the first `num_action_chunks`.

    `trainable=False` (an expert) may store the weights in bf16; a student keeps fp32 master weights and runs under
    bf16 autocast instead (see `model.apply_precision`). A student whose checkpoint carries no norm stats starts
    with identity stats and `needs_norm_stats` set: the runner calls `fit_norm_stats` with the first iterations'
    expert-labelled data (actor.norm_stats_iterations), and the stats then travel in `state_dict` (run checkpoints, Ray workers) and `save`.
    """

    def __init__(self, cfg, device: str | torch.device = "cpu", trainable: bool = True):
        _require_transformers()
        from dagger_cli.policies.pi0 import lerobot
        from dagger_cli.policies.pi0.checkpoint import NormStats, find_norm_stats, load_weights
        from dagger_cli.policies.pi0.config import model_name, token_len
        from dagger_cli.policies.pi0.model import Pi0Model, apply_precision
        from dagger_cli.policies.pi0.sizes import model_size
        from dagger_cli.policies.pi0.tokenizer import PromptTokenizer
        from dagger_cli.policies.pi0.transforms import DATA_SPECS

        p = cfg.pi0
        self.cfg = cfg
        self.key = "actor.model" if trainable else "rollout.expert_model"
        """the config section, for error messages"""
        self.device = torch.device(device)
        spec = DATA_SPECS[p.data]
        name = model_name(p.pi05)
        model_path = Path(cfg.model_path).expanduser() if cfg.model_path else None
        if model_path is not None and not model_path.exists():
            raise CheckpointError(f"{model_path}: no such {name} checkpoint directory")
        from_lerobot = model_path is not None and model_path.is_dir() and lerobot.is_lerobot(model_path)
        self.lerobot_made = from_lerobot
        """a checkpoint in LeRobot's layout: normalised and sampled as LeRobot does (its normaliser's epsilon, its
        denoising step times)"""
        horizon = p.action_horizon
        if horizon is None and p.pi05 and from_lerobot:
            horizon = lerobot.chunk_size(model_path)  # π0.5's horizon varies by task; its weights do not depend on it
        size = model_size(p.variant, p.pi05, horizon)
        # weights before the tokenizer and norm stats: the largest, likeliest problem is reported first; the model
        # is made where it runs (initialising 3.5 B parameters on a GPU takes seconds, on a CPU a minute)
        if from_lerobot:
            lerobot.check_config(model_path, size, p.variant, self.key, cfg.action_dim)
        self.openpi_convention = "delta" if not p.pi05 or spec.pi05_delta else "absolute"
        """the convention openpi's and RLinf's config for this model and data trains in (their layout implies it)"""
        self.action_convention = (p.action_convention if p.action_convention != "auto"
                                  else layout_convention(model_path, self.openpi_convention))
        """`delta` or `absolute` (see Pi0Config.action_convention): what the model's actions and stats mean"""
        auto_norm = (lerobot.normalization(model_path) if from_lerobot else None) or (
            "quantiles" if p.pi05 else "mean_std")
        self.quantiles = (p.normalization if p.normalization != "auto" else auto_norm) == "quantiles"
        """normalise state and actions by their q01..q99 range (π0.5's default), else by mean and std"""
        self.state_tokens = p.pi05 and (p.state_tokens if p.state_tokens is not None
                                        else from_lerobot or spec.pi05_state_tokens)
        """π0.5 reads the normalised state from its prompt"""
        with self.device:
            self.model = Pi0Model(size)
        if model_path is not None:
            load_weights(self.model, model_path, f"{self.key}.pi0.pi05")
        self.precision = resolve_precision(p.precision, self.device)
        self.autocast = apply_precision(self.model, self.precision, trainable, p.train_expert_only)
        self.model.to(self.device).eval()
        self.model.gradient_checkpointing = p.gradient_checkpointing
        if p.train_expert_only:
            for param in self.model.paligemma_with_expert.paligemma.parameters():
                param.requires_grad_(False)
        if not trainable:
            self.model.requires_grad_(False)
        self.module = self.model
        self.compile_loss = trainable and p.compile_loss
        """the training pass goes through torch.compile (`_training_pass`)"""
        self._compiled_loss = None
        self.augment = trainable and (p.train_augmentation if p.train_augmentation is not None
                                      else DATA_SPECS[p.data].augment)
        """augment camera images in `loss` (never in `act`)"""
        self.num_steps = p.num_steps
        self.uncertainty_samples = p.uncertainty_samples
        self.noise_scale = p.sample_noise_scale
        self.chunk = cfg.num_action_chunks
        self.action_shape = (size.action_horizon, cfg.action_dim)
        if cfg.num_action_chunks > size.action_horizon:
            raise CheckpointError(
                f"num_action_chunks {cfg.num_action_chunks} exceeds the {p.variant} {name}'s horizon of "
                f"{size.action_horizon}"
            )
        self.tokenizer = PromptTokenizer(p.tokenizer_path, token_len(p))
        if self.tokenizer.vocab_size > size.vocab_size:
            raise CheckpointError(
                f"{self.tokenizer.path}: tokenizer has {self.tokenizer.vocab_size} pieces, "
                f"the {p.variant} {name} embeds {size.vocab_size}"
            )
        key = f"{self.key}.pi0.norm_stats_path"
        norm = find_norm_stats(model_path, p.asset_id, p.norm_stats_path, required=not trainable, key=key)
        self.needs_norm_stats = norm is None
        """no stats yet: identity until `fit_norm_stats`"""
        self._set_norm_stats(norm or NormStats.identity(size.action_dim))

    def _set_norm_stats(self, norm) -> None:
        from dagger_cli.policies.pi0.transforms import DATA_SPECS, Pi0Transforms

        size = self.model.size
        norm.require(self.quantiles, f"{self.key}.pi0.normalization")
        self.transforms = Pi0Transforms(DATA_SPECS[self.cfg.pi0.data], norm, self.cfg.action_dim, size.action_dim,
                                        image_size=size.siglip.image_size, delta=self.action_convention == "delta",
                                        quantiles=self.quantiles, lerobot=self.lerobot_made)

    def _set_convention(self, convention: str) -> None:
        """A convention a checkpoint recorded or its layout implies; the config's key, when set, wins."""
        if self.cfg.pi0.action_convention == "auto" and convention != self.action_convention:
            self.action_convention = convention
            self._set_norm_stats(self.transforms.norm)

    def _precision_context(self):
        """bf16 autocast for a trained model in bfloat16 precision; nothing otherwise."""
        if not self.autocast:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=torch.bfloat16)

    # INPUTS
    def _as_dict(self, obs) -> dict[str, np.ndarray]:
        """Observations as a dict with `state` and `prompt` (a bare array is the state; the default prompt fills in)."""
        if not isinstance(obs, dict):
            obs = {"state": np.asarray(obs)}
        if "state" not in obs:
            raise ValueError(f"π₀ expects observations with 'state', 'prompt' and cameras, got {sorted(obs)}")
        if "prompt" not in obs:
            prompt = self.cfg.pi0.default_prompt
            if prompt is None:
                raise ValueError(
                    f"π₀ expects observations with 'state', 'prompt' and cameras, got {sorted(obs)}; "
                    "set actor.model.pi0.default_prompt for an env without instructions"
                )
            obs = {**obs, "prompt": np.full(len(obs["state"]), prompt, dtype=object)}
        return obs

    def inputs(self, obs) -> dict[str, torch.Tensor]:
        obs = self._as_dict(obs)
        images, image_masks = self.transforms.images(obs)
        in_prompt = self.transforms.normalised_state(obs["state"]) if self.state_tokens else None
        if in_prompt is not None and self.cfg.pi0.state_token_dims:
            from dagger_cli.policies.pi0.transforms import pad_last

            in_prompt = pad_last(in_prompt, self.cfg.pi0.state_token_dims)
        tokens, token_masks = self.tokenizer.encode_batch(obs["prompt"], in_prompt)
        state = self.transforms.state(obs["state"])
        as_tensor = lambda x: torch.as_tensor(x, device=self.device)  # noqa: E731
        return {
            "images": as_tensor(images),
            "image_masks": as_tensor(image_masks),
            "tokens": as_tensor(tokens),
            "token_masks": as_tensor(token_masks),
            "state": as_tensor(state),
        }

    # POLICY
    def sample_noise(self, batch: int, scale: float = 1.0) -> torch.Tensor:
        """Drawn from torch's global CPU generator, whose state every run checkpoint holds (exact resume), with std
        `scale` (drawn even at 0, so that the generator's stream does not depend on it)."""
        shape = (batch, self.model.size.action_horizon, self.model.size.action_dim)
        return (torch.randn(shape, dtype=torch.float32) * scale).to(self.device)

    @torch.no_grad()
    def act(self, obs, noise: torch.Tensor | None = None) -> np.ndarray:
        """(B, horizon, action_dim) env-unit actions; deterministic given `noise` (else drawn by `sample_noise` with
        std `pi0.sample_noise_scale`)."""
        obs = self._as_dict(obs)
        x = self.inputs(obs)
        if noise is None:
            noise = self.sample_noise(len(obs["state"]), self.noise_scale)
        with self._precision_context():
            out = self.model.sample_actions(**x, noise=noise.to(self.device), num_steps=self.num_steps,
                                            rounded_times=self.lerobot_made)
        return self.transforms.actions_from_model(out.float().cpu().numpy(), obs["state"])

    @torch.no_grad()
    def act_with_uncertainty(self, obs) -> tuple[np.ndarray, np.ndarray]:
        """`act`'s actions (the first of `uncertainty_samples` chunks sampled per observation from one prefix pass,
        each with its own noise) and, per observation, the chunks' spread: the standard deviation across them,
        averaged over the env's action dims and steps, in the model's normalised units. With a
        `sample_noise_scale` other than 1, the executed chunk is one more draw at that scale, beside the
        `uncertainty_samples` at scale 1 that the spread is taken over."""
        obs = self._as_dict(obs)
        x, batch, samples = self.inputs(obs), len(obs["state"]), self.uncertainty_samples
        apart = self.noise_scale != 1.0
        draws = samples + int(apart)
        noise = self.sample_noise(batch * draws)
        if apart:  # each observation's first draw, the executed one
            noise.view(batch, draws, *noise.shape[1:])[:, 0] *= self.noise_scale
        with self._precision_context():
            out = self.model.sample_actions(**x, noise=noise, num_steps=self.num_steps,
                                            rounded_times=self.lerobot_made).float()
        out = out.reshape(batch, draws, *out.shape[1:])
        horizon, dim = self.action_shape
        spread = out[:, int(apart):, :horizon, :dim].std(dim=1, correction=0).mean(dim=(1, 2))
        actions = self.transforms.actions_from_model(out[:, 0].cpu().numpy(), obs["state"])
        return actions, spread.cpu().numpy()

    def _augments(self) -> bool:
        return self.augment and bool(self.transforms.spec.wrist_slots())

    def loss_noise(self, batch: int) -> dict[str, torch.Tensor]:
        """The randomness of `loss` on `batch` samples, as CPU tensors with a leading batch dim: flow-matching
        `time` (B, D) ~ Beta(1.5, 1) scaled into [0.001, 1], `noise` (B, D, horizon, model action dim) for
        D = `pi0.loss_draws` draws per sample and, where images are augmented, the augmentation's `augment` draws
        (B, K, 6; one per slot for the batch). Drawn from torch's global CPU generator (run checkpoints hold it), in
        the order `loss` draws them when given none (D = 1: the same numbers); a data-parallel learner draws them
        for the global batch where it samples it, and ships each rank its rows."""
        k = self.cfg.pi0.loss_draws
        time = torch.distributions.Beta(torch.tensor(1.5), torch.tensor(1.0)).sample((batch, k)) * 0.999 + 0.001
        shape = (batch, k, self.model.size.action_horizon, self.model.size.action_dim)
        draws = {"time": time, "noise": torch.randn(shape, dtype=torch.float32)}
        if self._augments():
            from dagger_cli.policies.pi0.images import draw_augmentation

            size = self.transforms.image_size
            draws["augment"] = draw_augmentation(self.transforms.spec.wrist_slots(), size, size, batch)
        return draws

    def loss(self, obs, expert_actions: np.ndarray, noise: dict[str, torch.Tensor] | None = None) -> torch.Tensor:
        """Flow-matching loss on env-unit expert chunks, normalised with this policy's stats, cropped to the
        executed chunk and the env's action dims. Labels shorter than the horizon (an expert that labels one step)
        are extended with their last step; only the executed chunk is scored. `noise`: `loss_noise`'s draws for
        these samples (drawn here when None)."""
        return self._scored_errors(obs, expert_actions, noise).float().mean()

    def per_sample_loss(self, obs, expert_actions: np.ndarray,
                        noise: dict[str, torch.Tensor] | None = None) -> torch.Tensor:
        """`loss` of each sample (batch,), in fp32: the mean of its scored elements (their mean is `loss`)."""
        return self._scored_errors(obs, expert_actions, noise).float().mean(dim=(1, 2))

    def _scored_errors(self, obs, expert_actions: np.ndarray, noise: dict[str, torch.Tensor] | None) -> torch.Tensor:
        """The flow-matching squared errors `loss` averages: (batch, executed chunk, env action dims)."""
        obs = self._as_dict(obs)
        x = self.inputs(obs)
        labels = self._full_horizon(np.asarray(expert_actions))
        actions = torch.as_tensor(self.transforms.actions_to_model(labels, obs["state"]), device=self.device)
        if noise is None:
            noise = self.loss_noise(len(actions))
        if self._augments():
            from dagger_cli.policies.pi0.images import augment_for_training

            x["images"] = augment_for_training(x["images"], self.transforms.spec.wrist_slots(), noise["augment"])
        with self._precision_context():
            draws = noise["noise"].reshape(-1, *noise["noise"].shape[-2:])  # (B·D, horizon, dims), D draws each
            per_element = self._training_pass()(**x, actions=actions, noise=draws.to(self.device),
                                                 time=noise["time"].reshape(-1).to(self.device))
        return per_element[:, : self.chunk, : self.cfg.action_dim]

    def _training_pass(self):
        """The model's loss pass; with `pi0.compile_loss`, compiled at its first call (compiling is lazy either way)."""
        if not self.compile_loss:
            return self.model.loss
        if self._compiled_loss is None:
            self._compiled_loss = torch.compile(self.model.loss)
        return self._compiled_loss

    def __getstate__(self) -> dict:
        """Picklable (data-parallel ranks receive the student) without the compiled pass, which is rebuilt there."""
        return {**self.__dict__, "_compiled_loss": None}

    def _full_horizon(self, labels: np.ndarray) -> np.ndarray:
        horizon = self.model.size.action_horizon
        if labels.ndim != 3 or labels.shape[1] < self.chunk or labels.shape[1] > horizon:
            raise ValueError(
                f"π₀ labels must be (batch, {self.chunk}..{horizon}, action_dim), got {labels.shape}"
            )
        if labels.shape[1] < horizon:
            labels = np.concatenate([labels, np.repeat(labels[:, -1:], horizon - labels.shape[1], axis=1)], axis=1)
        return labels

    # NORM STATS
    def fit_norm_stats(self, obs, expert_actions: np.ndarray) -> None:
        """Computes the stats (mean and std, q01 and q99) of expert-labelled data: states as observed, labels as the
        model sees them (delta dims relative to the state)."""
        from dagger_cli.policies.pi0.checkpoint import NormStats

        state = np.asarray(self._as_dict(obs)["state"], dtype=np.float64)
        labels = np.asarray(expert_actions, dtype=np.float64)[..., : self.cfg.action_dim]
        deltas = labels - self.transforms.delta_base(state)[:, None, :]
        source = f"computed from {len(state)} expert-labelled samples"
        self._set_norm_stats(NormStats.from_data(state, deltas, source=source))
        self.needs_norm_stats = False

    # CHECKPOINT
    def state_dict(self) -> dict[str, torch.Tensor]:
        """Weights in openpi's names, the norm stats in use under `norm_stats/` (none while it has none) and the
        action convention under `CONVENTION_KEY`."""
        from dagger_cli.policies.pi0.checkpoint import openpi_state_dict

        state = openpi_state_dict(self.model)
        if not self.needs_norm_stats:
            state.update(self.transforms.norm.to_tensors())
        state[CONVENTION_KEY] = torch.tensor([self.action_convention == "delta"], dtype=torch.uint8)
        return state

    def load_state_dict(self, state: dict[str, torch.Tensor], source: str = "checkpoint") -> None:
        from dagger_cli.policies.pi0.checkpoint import NORM_KEY, NormStats, load_state

        norm = {k: v for k, v in state.items() if k.startswith(NORM_KEY)}
        weights = {k: v for k, v in state.items() if not k.startswith(NORM_KEY) and k != CONVENTION_KEY}
        load_state(self.model, weights, source, f"{self.key}.pi0.pi05")
        if CONVENTION_KEY in state:
            self._set_convention("delta" if int(state[CONVENTION_KEY].flatten()[0]) else "absolute")
        if norm:
            self._set_norm_stats(NormStats.from_tensors(norm, source))
            self.needs_norm_stats = False

    def load_weights(self, path: str | Path) -> None:
        """Weights (and norm stats, where they are) from a run checkpoint's `student.safetensors`, an openpi/RLinf
        checkpoint directory or a weights file."""
        from dagger_cli.policies.pi0.checkpoint import find_norm_stats
        from dagger_cli.policies.weights import read_weights

        path = Path(path).expanduser()
        state = read_weights(path)
        if CONVENTION_KEY not in state and path.is_dir():
            self._set_convention(layout_convention(path, self.openpi_convention))
        self.load_state_dict(state, str(path))
        if path.is_dir() and self.needs_norm_stats:
            norm = find_norm_stats(path, self.cfg.pi0.asset_id, None, required=False)
            if norm is not None:
                self._set_norm_stats(norm)
                self.needs_norm_stats = False

    def save_lerobot(self, directory: Path) -> Path:
        """`directory` in LeRobot's `PI0Policy` / `PI05Policy.save_pretrained` layout (config.json, weights,
        normaliser files)."""
        from dagger_cli.policies.pi0 import lerobot
        from dagger_cli.policies.pi0.config import model_name, token_len
        from dagger_cli.policies.pi0.transforms import dims_text

        p = self.cfg.pi0
        name = model_name(p.pi05)
        delta = self.transforms.delta_dims()
        if delta:
            raise UsageError(
                f"--format lerobot-checkpoint: this {name} predicts actions relative to the state on dims "
                f"{dims_text(delta)} (openpi's convention for data {p.data}), and LeRobot's {name} has no delta "
                "step, so it would execute them as absolute; export --format checkpoint (openpi's layout), or train "
                "the student with actor.model.pi0.action_convention=absolute"
            )
        if p.pi05 and not self.state_tokens:
            raise UsageError(
                "--format lerobot-checkpoint: this π0.5 does not read the state from its prompt, and LeRobot's π0.5 "
                "always writes it there; export --format checkpoint (openpi's layout), or train the student with "
                "actor.model.pi0.state_tokens=true"
            )
        cameras = tuple(camera for camera in self.transforms.spec.cameras if camera is not None)
        return lerobot.save(self.model, self.transforms.norm, self.model.size, directory, p.variant,
                            self.cfg.action_dim, quantiles=self.quantiles, token_len=token_len(p), cameras=cameras,
                            num_steps=self.num_steps, action_steps=self.chunk)

    def save(self, directory: Path) -> Path:
        """`<directory>/model.safetensors` in openpi's layout plus this policy's norm stats (a loadable model_path)."""
        from dagger_cli.core.io.files import write_json
        from dagger_cli.policies.pi0.checkpoint import save_weights
        from dagger_cli.policies.pi0.config import model_name
        from dagger_cli.policies.pi0.transforms import dims_text

        implied = self.transforms.spec_delta_dims()
        if self.action_convention != self.openpi_convention and implied:
            if self.action_convention == "absolute":
                raise UsageError(
                    f"--format checkpoint: this {model_name(self.cfg.pi0.pi05)} predicts absolute actions (LeRobot's "
                    f"convention), and openpi's "
                    f"layout for data {self.cfg.pi0.data} means actions relative to the state on dims "
                    f"{dims_text(implied)}; export --format lerobot-checkpoint"
                )
            raise UsageError(
                f"--format checkpoint: this π0.5 predicts actions relative to the state on dims {dims_text(implied)}, "
                f"and openpi's π0.5 layout for data {self.cfg.pi0.data} means absolute actions; train the student "
                "with actor.model.pi0.action_convention=absolute"
            )
        path = save_weights(self.model, directory)
        stats_dir = Path(directory) / self.cfg.pi0.asset_id
        stats_dir.mkdir(parents=True, exist_ok=True)
        write_json(stats_dir / "norm_stats.json", self.transforms.norm.to_json())
        return path
