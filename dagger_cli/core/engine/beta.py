"""Beta schedules: the probability that the expert's action is executed at DAgger iteration k.

`beta(k)` is a pure function of the iteration, so a resumed run continues with exactly the beta it would have had.

Difference from RLinf: RLinf decays beta at the start of every rollout epoch, before the first action, so its
iteration k uses `max(beta_min, init_beta * decay**(k+1))` and even the first rollout is not pure expert. Here
iteration 0 uses `init_beta` itself: `exponential` gives `max(beta_min, init_beta * beta_decay**k)`.
"""

from __future__ import annotations

from dataclasses import dataclass

from dagger_cli.core.config import DaggerConfig


@dataclass(frozen=True)
class BetaSchedule:
    kind: str
    """exponential | linear | constant"""
    init_beta: float
    """beta at iteration 0"""
    decay: float
    """exponential: factor per iteration; linear: amount subtracted per iteration"""
    beta_min: float
    """floor"""

    @classmethod
    def from_config(cls, cfg: DaggerConfig) -> BetaSchedule:
        return cls(cfg.beta_schedule, cfg.init_beta, cfg.beta_decay, cfg.beta_min)

    def __call__(self, iteration: int) -> float:
        if iteration < 0:
            raise ValueError(f"iteration must be >= 0, got {iteration}")
        if self.kind == "exponential":
            beta = self.init_beta * self.decay**iteration
        elif self.kind == "linear":
            beta = self.init_beta - self.decay * iteration
        elif self.kind == "constant":
            beta = self.init_beta
        else:
            raise ValueError(f"unknown beta schedule {self.kind!r}")
        return float(max(self.beta_min, min(self.init_beta, beta)))
