import pytest

from dagger_cli.core.engine.beta import BetaSchedule
from dagger_cli.core.config import DaggerConfig


@pytest.mark.parametrize(
    "kind, init, decay, floor, expected",
    [
        ("exponential", 1.0, 0.5, 0.05, [1.0, 0.5, 0.25, 0.125, 0.0625, 0.05, 0.05]),
        ("exponential", 0.8, 0.9, 0.0, [0.8, 0.72, 0.648, 0.5832, 0.52488, 0.472392, 0.4251528]),
        ("linear", 1.0, 0.25, 0.1, [1.0, 0.75, 0.5, 0.25, 0.1, 0.1, 0.1]),
        ("constant", 0.3, 0.5, 0.05, [0.3] * 7),
    ],
)
def test_schedule_values(kind, init, decay, floor, expected):
    # GIVEN a schedule
    schedule = BetaSchedule(kind, init, decay, floor)
    # WHEN it is asked for iterations 0..6
    values = [schedule(k) for k in range(7)]
    # THEN iteration 0 uses init_beta itself and later ones follow the formula, floored at beta_min
    assert values == pytest.approx(expected)


def test_iteration_zero_is_init_beta_unlike_rlinf():
    # GIVEN RLinf's MLP values (init 1.0, decay 0.98)
    schedule = BetaSchedule.from_config(DaggerConfig(init_beta=1.0, beta_decay=0.98, beta_min=0.05))
    # THEN the first rollout is pure expert (RLinf would already use 0.98) and the floor arrives at k=149
    assert schedule(0) == 1.0
    assert schedule(1) == pytest.approx(0.98)
    assert schedule(148) > 0.05
    assert schedule(149) == 0.05


def test_negative_iteration_is_rejected():
    with pytest.raises(ValueError):
        BetaSchedule("exponential", 1.0, 0.5, 0.0)(-1)
