"""While a model is logged, MLflow's cloudpickle notice is dropped and nothing else is."""

from __future__ import annotations

import logging

import pytest

from robo_assets.training.tracked import CLOUDPICKLE_NOTICE, cloudpickle_notice_dropped


def test_only_the_notice_is_dropped_and_only_while_a_model_is_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    logger = logging.getLogger("mlflow.sklearn")
    notice = f"{CLOUDPICKLE_NOTICE} requires exercising caution"
    with caplog.at_level(logging.WARNING, logger="mlflow.sklearn"):
        with cloudpickle_notice_dropped():
            logger.warning(notice)
            logger.warning("something else went wrong")
        logger.warning(notice)
    assert [r.getMessage() for r in caplog.records] == ["something else went wrong", notice]
