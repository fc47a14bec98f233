import shutil

import pytest


@pytest.fixture(autouse=True, scope="session")
def _helm_on_path() -> None:
    if shutil.which("helm") is None:
        pytest.fail("helm is not on PATH: run ./task deps and put .cache/bin on PATH")
