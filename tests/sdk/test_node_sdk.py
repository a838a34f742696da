"""The official Node SDK (npm `dodopayments`) against the live server, when `node` and `npm`
are on PATH: tests/sdk/node/conformance.cjs calls the same main methods as the Python strict
conformance test and exits 0 only if every call succeeded."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

NODE_SDK_VERSION = "2.52.0"  # the npm release of the Python SDK 1.123.0's era
SCRIPT = Path(__file__).parent / "node" / "conformance.cjs"


def sdk_dir() -> Path:
    """The package, installed once from the npm registry under the data folder (kept between
    runs; a fresh CI machine installs it, in a few seconds)."""
    base = (
        Path(os.environ.get("BILLING_DATA_DIR", ".data")) / f"node-dodopayments-{NODE_SDK_VERSION}"
    )
    package = base / "node_modules" / "dodopayments" / "package.json"
    if not package.exists() or json.loads(package.read_text())["version"] != NODE_SDK_VERSION:
        base.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            ["npm", "install", "--no-audit", "--no-fund", "--silent", "--prefix", str(base),
             f"dodopayments@{NODE_SDK_VERSION}"],
            check=True, timeout=300, capture_output=True, text=True,
        )  # fmt: skip
    return base


@pytest.mark.skipif(not (shutil.which("node") and shutil.which("npm")), reason="needs node and npm")
@pytest.mark.django_db(transaction=True)
def test_the_node_sdk_calls_every_main_method(live_server, live_api_key):
    result = subprocess.run(
        ["node", str(SCRIPT)],
        env={
            **os.environ,
            "DODO_SDK_DIR": str(sdk_dir()),
            "DODO_BASE_URL": f"{live_server.url}/api",
            "DODO_API_KEY": live_api_key,
        },
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "every call succeeded" in result.stdout
