"""The sampler's default choice (moldiff.diffusion.grids): the exact chain for all T steps, the measured best
few-step solver for fewer, and an explicit choice always kept."""
import subprocess
import sys

import pytest

from moldiff.diffusion.grids import SOLVERS, SPACINGS, default_sampler


@pytest.mark.parametrize("steps", [None, 1000])
def test_all_steps_run_the_chain_itself(steps):
    assert default_sampler(steps, 1000) == ("ancestral", "uniform")


@pytest.mark.parametrize("steps", [1, 20, 999])
def test_fewer_steps_take_the_sde_solver_on_quadratic_spacing(steps):
    assert default_sampler(steps, 1000) == ("sde-dpm2m", "quadratic")


def test_ddim_keeps_the_chains_own_deterministic_step():
    assert default_sampler(20, 1000, deterministic=True) == ("ancestral", "quadratic")


@pytest.mark.parametrize("solver", SOLVERS)
@pytest.mark.parametrize("spacing", SPACINGS)
def test_an_explicit_choice_is_kept(solver, spacing):
    assert default_sampler(20, 1000, False, solver, spacing) == (solver, spacing)
    assert default_sampler(None, 1000, False, solver, spacing) == (solver, spacing)


def test_the_option_names_import_without_torch():
    code = "import sys, moldiff.diffusion.grids; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.stdout.strip() == "False", out.stderr[-300:]
