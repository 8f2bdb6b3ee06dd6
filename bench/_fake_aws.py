"""Fake AWS credentials for the benchmarks: they run against moto, and nothing reaches AWS."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Final

REGION: Final = "us-east-1"


def use_fake_aws_environment(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """Fake credentials and a region; no endpoint override or profile can reach AWS."""
    for name in list(os.environ):
        if name.startswith("AWS_ENDPOINT_URL") or name in ("AWS_PROFILE", "AWS_DEFAULT_PROFILE"):
            del os.environ[name]
    os.environ.update(
        {
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_SECURITY_TOKEN": "testing",
            "AWS_SESSION_TOKEN": "testing",
            "AWS_DEFAULT_REGION": REGION,
            "AWS_REGION": REGION,
            "AWS_ACCOUNT_ID_ENDPOINT_MODE": "disabled",
            "AWS_CONFIG_FILE": os.devnull,
            "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
            **(extra or {}),
        }
    )
    return dict(os.environ)
