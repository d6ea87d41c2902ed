"""The Node.js client carries copies of the contract's JSON Schema and of the price table (``npm run sync`` makes
them): they must not drift from the sources the worker and the Python client use."""

from __future__ import annotations

import json
from pathlib import Path

from worker.client.pricing import PRICES_FILE
from worker.contract import json_schema

NODE = Path(__file__).resolve().parent.parent / "clients" / "node"


def test_node_schema_is_the_contracts() -> None:
    copy = json.loads((NODE / "src" / "data" / "job-message.schema.json").read_text())
    assert copy == json.loads(json.dumps(json_schema())), "run `npm run sync` in clients/node"


def test_node_prices_are_the_price_table() -> None:
    copy = json.loads((NODE / "src" / "data" / "prices.json").read_text())
    assert copy == json.loads(PRICES_FILE.read_text()), "run `npm run sync` in clients/node"


def test_the_migration_guide_shows_the_express_example_as_the_tests_run_it() -> None:
    guide = (NODE.parent.parent / "docs" / "migrating.md").read_text()
    example = (NODE / "examples" / "express-webhook.ts").read_text()
    assert f"```ts\n{example.rstrip()}\n```" in guide
