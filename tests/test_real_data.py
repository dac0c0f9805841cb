"""The default model on the 42,000-row competition data (skipped where it is absent)."""

from __future__ import annotations

import pytest

from src.core.config import Config
from src.data.submission import validate_submission
from src.pipeline.run import run

REAL_EPOCHS = 20


@pytest.mark.slow
def test_default_model_on_the_real_data(real_data, tmp_path):
    result = run(Config(epochs=REAL_EPOCHS), real_data, tmp_path / "submission.csv", verbose=0)
    assert result.record.inputs.train.rows == 42_000
    assert result.record.validation.members[0].validation_rows == 8_400
    assert result.record.validation.accuracy >= 0.90
    validate_submission(result.submission_path, n_rows=28_000)
