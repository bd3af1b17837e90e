"""What goes into π₀ and what comes out, per dataset (openpi's LIBERO and Aloha/RoboTwin transforms).

In: cameras → the image slots (`base_0_rgb`, `left_wrist_0_rgb`, `right_wrist_0_rgb`; a slot the dataset has no
camera for is left out, which equals openpi's masked zero image; a camera missing from an observation is a zero
image with its mask off), resize-with-pad to 224, [-1, 1]; state normalised and zero-padded to 32; the prompt
tokenised to 48 (π0.5: 200, the normalised state maybe in it). Actions (training labels): delta on the masked dims
(relative to the current state) for a checkpoint of openpi's convention, as the env takes them for LeRobot's;
normalised, padded to 32. Normalised = z-scored (π₀), or the q01..q99 range mapped to [-1, 1] (π0.5). Out:
unnormalised, absolute again, cut to the env's action size. Labels and outputs stay in env units over the full
horizon, so student and expert may carry different norm stats.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from dagger_cli.policies.pi0.checkpoint import NormStats
from dagger_cli.policies.pi0.images import resize_with_pad, to_model_range

EPS = 1e-6  # openpi's z-score epsilon
LEROBOT_EPS = 1e-8  # LeRobot's NormalizerProcessorStep's


@dataclass(frozen=True)
class DataSpec:
    cameras: tuple[str | None, str | None, str | None]
    """observation keys feeding base_0_rgb, left_wrist_0_rgb, right_wrist_0_rgb (None: no camera, slot left out)"""
    delta_mask: tuple[bool, ...]
    """action dims trained as deltas to the state (openpi's extra_delta_transform)"""
    augment: bool = False
    """train-time image augmentation by default (openpi's, as RLinf's π₀ update runs it)"""
    pi05_delta: bool = True
    """openpi's and RLinf's π0.5 config for the data trains the delta mask's dims as deltas too (pi05_libero does
    not: LIBERO's actions are already end-effector deltas)"""
    pi05_state_tokens: bool = True
    """openpi's and RLinf's π0.5 config for the data writes the state into the prompt (pi05_libero does not)"""

    def wrist_slots(self) -> list[bool]:
        """For each camera slot the model gets (in order): whether it is a wrist camera (all but the base slot)."""
        return [slot > 0 for slot, key in enumerate(self.cameras) if key is not None]


DATA_SPECS = {
    # LiberoInputs: agentview + wrist camera, 8-D state, 7-D actions (6 delta + absolute gripper); openpi's
    # pi05_libero: no delta step, no state
    "libero": DataSpec(("image", "wrist_image", None), (True,) * 6 + (False,), augment=True, pi05_delta=False,
                       pi05_state_tokens=False),
    # AlohaInputs(adapt_to_pi=False): head + two wrists, 14-D [left arm 6, gripper, right arm 6, gripper]; RLinf's
    # pi05_aloha_robotwin: delta joints, state in the prompt
    "robotwin": DataSpec(("image", "left_wrist_image", "right_wrist_image"), ((True,) * 6 + (False,)) * 2,
                         augment=True),
    # state observations alone (e.g. ManiSkill obs_mode=state): no camera, actions as the env takes them
    "state": DataSpec((None, None, None), ()),
}


def dims_text(dims: list[int]) -> str:
    """Action dims for a message: `0–5` for a run, else listed."""
    return f"{dims[0]}–{dims[-1]}" if dims == list(range(dims[0], dims[-1] + 1)) else ", ".join(map(str, dims))


def pad_last(x: np.ndarray, size: int) -> np.ndarray:
    if x.shape[-1] > size:
        raise ValueError(f"dimension {x.shape[-1]} exceeds the model's {size}")
    return np.concatenate([x, np.zeros((*x.shape[:-1], size - x.shape[-1]), dtype=x.dtype)], axis=-1)


class Pi0Transforms:
    def __init__(self, spec: DataSpec, norm: NormStats, action_dim: int, model_dim: int = 32, image_size: int = 224,
                 delta: bool = True, quantiles: bool = False, lerobot: bool = False):
        self.spec = spec
        self.norm = norm
        self.delta = delta
        """actions relative to the state on the spec's delta dims (openpi's convention); else absolute (LeRobot's)"""
        self.quantiles = quantiles
        """normalise by the q01..q99 range (π0.5's default) instead of mean and std"""
        self.lerobot = lerobot
        """normalise as LeRobot's normaliser does (a checkpoint in its layout): LEROBOT_EPS added to the std when
        normalising only, to a quantile range only where it is 0; else openpi's EPS, added both ways"""
        self.action_dim = action_dim
        self.model_dim = model_dim
        self.image_size = image_size
        if norm.dims("actions") < action_dim:
            raise ValueError(f"{norm.source}: actions stats have {norm.dims('actions')} dims, the env needs {action_dim}")

    def _normalise(self, x: np.ndarray, which: str) -> np.ndarray:
        """x (..., d) -> z-scores, or the q01..q99 range onto [-1, 1] (openpi's formulas, its 1e-6 included, or
        LeRobot's)."""
        d, n = x.shape[-1], self.norm
        if self.quantiles:
            low, high = getattr(n, f"{which}_q01")[:d], getattr(n, f"{which}_q99")[:d]
            return (x - low) / self._range(low, high) * 2.0 - 1.0
        return (x - getattr(n, f"{which}_mean")[:d]) / (getattr(n, f"{which}_std")[:d] + (
            LEROBOT_EPS if self.lerobot else EPS))

    def _range(self, low: np.ndarray, high: np.ndarray) -> np.ndarray:
        """q99 - q01 with openpi's EPS added, or LeRobot's where it is 0."""
        if self.lerobot:
            return np.where(high == low, LEROBOT_EPS, high - low)
        return high - low + EPS

    def images(self, obs: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """-> images (B, K, 3, 224, 224) float32 in [-1, 1] (slot, channel-first), masks (B, K) bool, for the K
        slots the dataset has cameras for."""
        batch = len(obs["state"])
        keys = [key for key in self.spec.cameras if key is not None]
        out = np.zeros((batch, len(keys), 3, self.image_size, self.image_size), dtype=np.float32)
        masks = np.zeros((batch, len(keys)), dtype=bool)
        for slot, key in enumerate(keys):
            if key not in obs:
                out[:, slot] = -1.0  # a zero uint8 image in [-1, 1]
                continue
            image = np.asarray(obs[key])
            if image.dtype != np.uint8:
                image = (255 * image).astype(np.uint8)
            image = resize_with_pad(image, self.image_size, self.image_size)
            out[:, slot] = to_model_range(image).transpose(0, 3, 1, 2)
            masks[:, slot] = True
        return out, masks

    def state(self, state: np.ndarray) -> np.ndarray:
        """Raw state (B, S) -> normalised, padded (B, 32) float32."""
        return pad_last(self.normalised_state(state), self.model_dim).astype(np.float32)

    def normalised_state(self, state: np.ndarray) -> np.ndarray:
        """Raw state (B, S) -> normalised (B, S) float64 (what π0.5 writes into its prompt)."""
        state = np.asarray(state, dtype=np.float64)
        d = state.shape[-1]
        if self.norm.dims("state") < d:
            raise ValueError(f"{self.norm.source}: state stats have {self.norm.dims('state')} dims, the env gives {d}")
        return self._normalise(state, "state")

    def spec_delta_dims(self) -> list[int]:
        """The action dims the data spec trains relative to the state under openpi's convention."""
        return [d for d, on in enumerate(self.spec.delta_mask[: self.action_dim]) if on]

    def delta_dims(self) -> list[int]:
        """The action dims the model predicts relative to the state (none under the absolute convention)."""
        return self.spec_delta_dims() if self.delta else []

    def delta_base(self, state: np.ndarray) -> np.ndarray:
        """(B, action_dim) amounts the delta dims are relative to (zero on absolute dims)."""
        mask = np.zeros(self.action_dim, dtype=bool)
        mask[self.delta_dims()] = True
        base = np.zeros((len(state), self.action_dim))
        base[:, mask] = np.asarray(state, dtype=np.float64)[:, : self.action_dim][:, mask]
        return base

    def actions_to_model(self, actions: np.ndarray, state: np.ndarray) -> np.ndarray:
        """Env-unit chunks (B, H, A) -> delta, normalised, padded (B, H, 32) float32."""
        a = np.asarray(actions, dtype=np.float64) - self.delta_base(state)[:, None, :]
        return pad_last(self._normalise(a, "actions"), self.model_dim).astype(np.float32)

    def actions_from_model(self, x: np.ndarray, state: np.ndarray) -> np.ndarray:
        """Model output (B, H, 32) -> env-unit chunks (B, H, A)."""
        d, n = self.action_dim, self.norm
        x = np.asarray(x, dtype=np.float64)[..., :d]
        if self.quantiles:
            a = (x + 1.0) / 2.0 * self._range(n.actions_q01[:d], n.actions_q99[:d]) + n.actions_q01[:d]
        else:
            a = x * (n.actions_std[:d] + (0.0 if self.lerobot else EPS)) + n.actions_mean[:d]
        return (a + self.delta_base(state)[:, None, :]).astype(np.float32)
