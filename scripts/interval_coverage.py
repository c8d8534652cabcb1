"""How often a 95 % interval for "method A minus method B" excludes 0 when A and B do not differ.

Simulated benchmarks: ``N`` test samples with a difficulty each, ``R`` seeds per method. Sample ``n`` of seed ``r``
of method A is right with probability ``sigmoid(mu_n + a_n + g_r + e_rn)``: ``a_n`` (sd ``tau``) is how well A suits
sample ``n`` (the same for every seed: test-sample noise, 0 without it), ``g_r`` (sd ``sigma``) the seed's luck,
``e_rn`` per-sample jitter; B the same with its own draws. With ``shift`` A's logits are raised (a real difference).
Compared: the paired bootstrap simmlm used before (test samples and seeds resampled together, percentile interval)
and :func:`simmlm.metrics.bootstrap.seed_and_test_interval`. Run it as a script for the table of the docs
(concepts/metrics.md)::

    python scripts/interval_coverage.py
"""

from __future__ import annotations

import torch

from simmlm.metrics.bootstrap import bootstrap_weights, seed_and_test_interval


def _old_bootstrap(diff: torch.Tensor, generator: torch.Generator, level: float = 0.95) -> tuple[float, float]:
    """The former procedure: draw ``k`` is the mean of ``diff[r_kj, k]`` over ``R`` seeds drawn with replacement."""
    num_seeds, num_draws = diff.shape
    seeds = torch.randint(num_seeds, (num_draws, num_seeds), generator=generator)
    draws = diff[seeds, torch.arange(num_draws).unsqueeze(1)].mean(1)
    tail = (1 - level) / 2
    low, high = torch.quantile(draws, torch.tensor([tail, 1 - tail], dtype=torch.float64))
    return low.item(), high.item()


def rejection_rates(
    seeds: int,
    tau: float,
    replicates: int = 1000,
    shift: float = 0.0,
    samples: int = 450,
    draws: int = 200,
    sigma: float = 0.3,
    seed: int = 0,
) -> dict[str, float]:
    """Share of replicates whose interval excludes 0, for the old and the new procedure."""
    gen = torch.Generator().manual_seed(seed)
    rejected = {"old": 0, "new": 0}
    for _ in range(replicates):
        mu = 2.0 + torch.randn(samples, generator=gen, dtype=torch.float64)

        def correct(extra: float, mu: torch.Tensor = mu) -> torch.Tensor:  # [R, N] 0/1 of one method
            suits = tau * torch.randn(samples, generator=gen, dtype=torch.float64)
            luck = sigma * torch.randn(seeds, 1, generator=gen, dtype=torch.float64)
            jitter = 0.5 * torch.randn(seeds, samples, generator=gen, dtype=torch.float64)
            p = torch.sigmoid(mu + suits + luck + jitter + extra)
            return (torch.rand(seeds, samples, generator=gen, dtype=torch.float64) < p).double()

        difference = correct(shift) - correct(0.0)  # [R, N]
        weights = torch.cat([torch.ones(1, samples, dtype=torch.float64), bootstrap_weights(samples, draws, gen)])
        per_draw = difference @ weights.T / samples  # [R, 1 + B]: accuracy differences
        low, high = _old_bootstrap(per_draw[:, 1:], gen)
        rejected["old"] += low > 0 or high < 0
        rejected["new"] += seed_and_test_interval(per_draw[:, 0], per_draw[:, 1:]).significant
    return {name: count / replicates for name, count in rejected.items()}


#: (name, sigma, tau): the seeds' luck dominates; seeds and per-sample noise of each seed; a part all seeds share.
SCENARIOS = (("seeds dominate", 1.0, 0.0), ("each seed's sample noise", 0.3, 0.0), ("shared sample noise", 0.3, 0.5))


def main() -> None:
    print("| noise | seeds | old bootstrap | new interval | new, a real shift of about 9 points (power) |")
    print("|---|---|---|---|---|")
    for name, sigma, tau in SCENARIOS:
        for seeds in (3, 5, 10):
            null = rejection_rates(seeds, tau, replicates=4000, sigma=sigma)
            power = rejection_rates(seeds, tau, replicates=1000, shift=1.0, sigma=sigma, seed=1)
            print(
                f"| {name} (sigma {sigma}, tau {tau}) | {seeds} | {null['old']:.1%} | {null['new']:.1%} | "
                f"{power['new']:.1%} |"
            )


if __name__ == "__main__":
    main()
