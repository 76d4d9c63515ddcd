"""The NaN/inf loss guard names the first bad step, whether it checks every step or every few."""

from __future__ import annotations

import pytest
import torch

from mtl.errors import TrainingError
from mtl.training.guards import LossGuard

LOSSES = [0.7, 0.6, float("nan"), 0.5, float("inf"), 0.4]


def feed(guard: LossGuard, losses: list[float], observed: list[int]) -> None:
    for step, loss in enumerate(losses, start=1):
        guard.observe(torch.tensor(loss), step)
        observed.append(step)


def test_checking_every_step_stops_at_the_bad_step():
    observed: list[int] = []
    with pytest.raises(TrainingError, match=r"^mmoe: .* at epoch 3, step 3;"):
        feed(LossGuard("mmoe", 3, device=torch.device("cpu")), LOSSES, observed)
    assert observed == [1, 2]  # raised while observing step 3, before anything else ran


def test_checking_every_few_steps_still_names_the_first_bad_step():
    observed: list[int] = []
    with pytest.raises(TrainingError, match=r"at epoch 1, step 3;"):
        feed(LossGuard("ple", 1, device=torch.device("cpu"), every=4), LOSSES, observed)
    assert observed == [1, 2, 3]  # raised at the check of step 4


def test_a_late_bad_step_is_caught_by_the_final_check():
    guard = LossGuard("aitm", 2, device=torch.device("cpu"), every=100)
    feed(guard, [0.3, float("-inf")], [])
    with pytest.raises(TrainingError, match="step 2"):
        guard.check()
    LossGuard("aitm", 2, device=torch.device("cpu")).check()  # nothing observed: nothing to say
