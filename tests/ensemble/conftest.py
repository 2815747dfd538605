import pytest

from collat_ensemble.phantom import generate_case


@pytest.fixture(scope="session")
def case_left_poor():
    """A poorly collateralized left-hemisphere stroke (seed below 1,000,000: an evaluation seed)."""
    return generate_case(101, strength=1, side="left")
