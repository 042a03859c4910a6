"""
What value an implementation really has, where it disagrees with its card: a failing test names the declared
value and the observed one ("softcap: card 15, the implementation caps at ~30"), so that a fork that changed a
constant on purpose sees which card value to change, and one that did not sees what broke. Each estimate is fitted
from what the test observed; it explains a failure, it never decides one.
"""

import math

import torch


def best(candidates, error):
    """The candidate with the smallest error."""
    return min(candidates, key=error)


def softcap(raw, logits):
    """The cap c that best explains logits = c * tanh(raw / c), or None when the logits are the raw ones."""
    raw, logits = raw.double(), logits.double()
    if (raw - logits).abs().max() < 1e-6:
        return None
    def error(c):
        return (c * torch.tanh(raw / c) - logits).abs().max().item()
    coarse = best(torch.logspace(0, 4, 801, dtype=torch.float64).tolist(), error)  # steps of 1.2 %
    return best(torch.linspace(coarse / 1.012, coarse * 1.012, 241, dtype=torch.float64).tolist(), error)


def say_softcap(declared, raw, logits):
    observed = softcap(raw, logits)
    what = "applies no cap" if observed is None else f"caps at ~{observed:.3g}"
    return f"softcap: card {declared:g}, the implementation {what}"


def scale_between(x, y):
    """The least-squares s of y ~ s * x."""
    x, y = x.double().flatten(), y.double().flatten()
    return float((x * y).sum() / (x * x).sum().clamp_min(1e-300))


def qk_gain(weights_of_gain, observed_weights):
    """The gain g that best explains the observed attention weights, `weights_of_gain(g)` the explicit weights."""
    grid = [0.5 + 0.005 * i for i in range(401)]  # 0.5 .. 2.5
    return best(grid, lambda g: (weights_of_gain(g) - observed_weights.double()).abs().max().item())


def say_qk_gain(declared, weights_of_gain, observed_weights):
    g = qk_gain(weights_of_gain, observed_weights)
    return f"QK gain: card {declared:g}, the implementation's attention matches a gain of ~{g:.3g}"


def rope_base(cos, sin, head_dim):
    """The base that best explains the tables (cos, sin: (1, T, 1, D/2)): the slope of the unwrapped angle of the
    slowest pair over every position is base^(-(D-2)/D), measured far more finely than one angle would be."""
    angles = torch.atan2(sin[0, :, 0, -1].double(), cos[0, :, 0, -1].double())
    steps = torch.diff(angles)
    unwrapped = torch.cat([angles[:1], angles[:1] + torch.cumsum(steps - 2 * math.pi * torch.round(steps / (2 * math.pi)), 0)])
    t = torch.arange(len(unwrapped), dtype=torch.float64)
    theta = float((t * unwrapped).sum() / (t * t).sum())
    return abs(theta) ** (-head_dim / (head_dim - 2)) if theta else float("inf")


def say_rope_base(declared, cos, sin, head_dim):
    return f"RoPE base: card {declared:g}, the implementation's tables turn as base ~{rope_base(cos, sin, head_dim):.4g}"
