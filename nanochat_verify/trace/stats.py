"""
Summary statistics of a tensor, exact and in bounded memory: what the tracer shows of every cached tensor.
"""

import math
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class TensorStats:
    shape: tuple
    dtype: str
    mean: float
    std: float
    min: float
    max: float
    rms: float
    zero_fraction: float

    # elements reduced at a time: bounded temporaries for big tensors (the embedding gradient of the
    # 561M model has 84M elements), and no float64 copy of a float32 tensor
    CHUNK = 1 << 22

    @classmethod
    def of(cls, t):
        x = t.detach().reshape(-1)
        n = x.numel()
        shape, dtype = tuple(t.shape), str(t.dtype).removeprefix("torch.")
        if n == 0:
            return cls(shape, dtype, math.nan, 0.0, math.nan, math.nan, math.nan, math.nan)
        parts, lows, highs, zeros = [], [], [], 0
        for chunk in x.split(cls.CHUNK):
            c = chunk if chunk.dtype in (torch.float32, torch.float64) else chunk.double()
            var, mean = torch.var_mean(c, correction=0)  # one pass per chunk
            parts.append((c.numel(), mean.item(), var.item()))
            low, high = torch.aminmax(c)
            lows.append(low)
            highs.append(high)
            zeros += c.numel() - torch.count_nonzero(c).item()
        # combine the chunks' means and variances exactly (Chan, Golub & LeVeque 1979), in float64
        mean = sum(k * m for k, m, _ in parts) / n
        squared_deviations = sum(k * (v + (m - mean) ** 2) for k, m, v in parts)
        return cls(
            shape=shape, dtype=dtype, mean=mean,
            std=math.sqrt(squared_deviations / (n - 1)) if n > 1 else 0.0,
            # torch's min/max over the chunk results, so that a NaN anywhere propagates
            min=torch.stack(lows).min().item(), max=torch.stack(highs).max().item(),
            rms=math.sqrt(squared_deviations / n + mean ** 2), zero_fraction=zeros / n,
        )
