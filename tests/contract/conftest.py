import pytest

from collat_ensemble.phantom import generate_case


@pytest.fixture(scope="session")
def case_right_good():
    """A well-collateralized right-hemisphere stroke (an evaluation seed)."""
    return generate_case(202, strength=4, side="right")
