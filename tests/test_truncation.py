"""The truncation rule (cgan_contract.noise): still a function of the seed, and only where it must be."""

from __future__ import annotations

import importlib

import numpy as np
import pytest

import cgan_contract as contract

# The package exports the function noise(), which hides the module of the same name.
noise_rule = importlib.import_module("cgan_contract.noise")

LATENT = 100


@pytest.mark.parametrize("threshold", [contract.MIN_TRUNCATION, 1.0, 2.5])
def test_truncated_entries_are_within_the_threshold_and_the_rest_untouched(threshold: float):
    seeds = contract.request_seeds(1000, 500)
    plain = contract.noise_for_seeds(seeds, LATENT)
    z = contract.truncated_noise_for_seeds(seeds, LATENT, threshold)
    assert z.dtype == np.float32 and z.shape == plain.shape
    assert np.abs(z).max() <= np.float32(threshold)
    inside = np.abs(plain) <= np.float32(threshold)
    np.testing.assert_array_equal(z[inside], plain[inside])
    # Beyond the threshold the entries were redrawn, not clamped: they spread over the allowed range.
    redrawn = z[~inside]
    assert len(redrawn) > 100
    assert np.mean(np.abs(redrawn) == np.float32(threshold)) < 0.01
    assert abs(float(redrawn.mean())) < 0.1


def test_truncation_is_a_function_of_each_seed_alone():
    z = contract.noise(7, 64, LATENT, truncation=1.0)
    np.testing.assert_array_equal(z, contract.noise(7, 64, LATENT, truncation=1.0))
    for k in (0, 5, 63):
        np.testing.assert_array_equal(z[k], contract.noise(7 + k, 1, LATENT, truncation=1.0)[0])
    assert not np.array_equal(z, contract.noise(8, 64, LATENT, truncation=1.0))


def test_the_redraw_is_the_documented_stream_draw():
    # Entry j of seed s redrawn in round 0 is draw latent_dim + 1024 + j + 1 of s's stream: past the
    # style codes' draws latent_dim + 1 .. latent_dim + k, so truncating a model with codes keeps its codes.
    assert noise_rule.TRUNCATION_OFFSET == 1024
    seed, latent = 11, 16
    plain = contract.noise_for_seeds([seed], latent)[0]
    z = contract.truncated_noise_for_seeds([seed], latent, 0.5)[0]
    redrawn = np.flatnonzero(np.abs(plain) > 0.5)
    first = noise_rule._normal(noise_rule._stream([seed], latent + 1024 + 1, latent))[0]
    taken = redrawn[np.abs(first[redrawn]) <= 0.5]
    assert len(taken) >= 1
    np.testing.assert_array_equal(z[taken], first[taken])


def test_truncation_always_ends_and_clamps_what_stays_out(monkeypatch: pytest.MonkeyPatch):
    # One round only: what is still out afterwards is clamped, never left beyond the threshold.
    seeds = contract.request_seeds(0, 200)
    monkeypatch.setattr(noise_rule, "TRUNCATION_ROUNDS", 1)
    z = contract.truncated_noise_for_seeds(seeds, LATENT, 0.5)
    assert np.abs(z).max() <= np.float32(0.5)
    assert np.any(np.abs(z) == np.float32(0.5))


@pytest.mark.parametrize("threshold", [0.49, 5.91, -1.0])
def test_thresholds_outside_the_range_are_refused(threshold: float):
    with pytest.raises(ValueError, match="truncation must be in 0.5..5.9"):
        contract.truncated_noise_for_seeds([0], LATENT, threshold)


def test_no_truncation_and_the_largest_threshold_leave_the_noise_alone():
    seeds = contract.request_seeds(0, 100)
    plain = contract.noise_for_seeds(seeds, LATENT)
    np.testing.assert_array_equal(contract.truncated_noise_for_seeds(seeds, LATENT, None), plain)
    np.testing.assert_array_equal(contract.truncated_noise_for_seeds(seeds, LATENT, 5.9), plain)
