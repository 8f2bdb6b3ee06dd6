"""The docs stay true: every method is documented, and every example is real.

docs/api.md has one ``### <method>`` section per registered method. Its
example requests are fenced as ```` ```json request <method> ```` and each is
followed by the answer, fenced as ```` ```json response <method> ````. Here the
requests must validate against the method's params model, the responses
against its result model (or, for an error, be one the method declares), and
replaying every request in document order against a fresh market must give
exactly the responses shown. Meter readings
(``energy.submitReading``) carry the example meter's real signature, and the
market's clock reads each reading's timestamp as it arrives.

The replay runs on DynamoDB (moto, tables from infra/template.yaml), because
the analytics methods read aggregates that only the tables' streams feed:
before each request, every new record of the registry's and the ledger's
streams is folded into them, as the stream consumers would have done by then,
so the figures shown are the story's own.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import simplejson
from nacl.signing import SigningKey
from pydantic import SecretStr

from chalicelib.adapters.dynamodb import DynamoUnitOfWork
from chalicelib.adapters.receipt_key import receipt_signing_key
from chalicelib.config import Settings
from chalicelib.domain import readings, signing
from chalicelib.rpc.methods import registry
from chalicelib.rpc.protocol import Dispatcher
from chalicelib.services.dependencies import Dependencies
from tests.support import StreamPump, tables_from_environment

ROOT = Path(__file__).resolve().parents[2]
API_DOC = ROOT / "docs" / "api.md"
README = ROOT / "README.md"
MARKDOWN_FILES = [README, *sorted((ROOT / "docs").glob("*.md"))]

# The story the examples tell (docs/api.md, "## Methods"): the marketplace,
# the keys that sign for its accounts and the clock before the first signed call.
EXAMPLE_MARKETPLACE_ID = "energy-marketplace-local"
EXAMPLE_START = 1_767_225_600  # 2026-01-01T00:00:00Z
EXAMPLE_SEEDS = {
    "alice.theblock": bytes(range(32)).hex(),  # the key of the worked signing example
    "operator": bytes(range(32, 64)).hex(),
    "bob.theblock": bytes(range(96, 128)).hex(),
}
# The marketplace's receipt signing key in the story (its public key is in
# energy.getMarketInfo's answer, and the receipts shown verify with it).
EXAMPLE_RECEIPT_SEED = bytes(range(128, 160)).hex()
# The meters of that story, by address, and the seeds of the keys they sign
# readings with (the public key is the registered ``meter_public_key``).
EXAMPLE_METER_SEEDS = {
    "solar_meter_001": bytes(range(64, 96)).hex(),
}
READING_METHOD = "energy.submitReading"

# Protocol errors a documented error response may show, by data.reason.
PROTOCOL_REASONS = {
    -32700: {"parse_error"},
    -32600: {"not_an_object", "empty_batch", "batch_too_large"},
    -32601: {"method_not_found"},
    -32602: {"invalid_params", "invalid_cursor"},
}

_FENCE = re.compile(r"^```(.*)$")
_EXAMPLE_INFO = re.compile(r"^json (request|response) (\S+)$")
_METHOD_HEADING = re.compile(r"^### (\S+)\s*$", re.M)


@dataclass(frozen=True)
class Block:
    """One fenced example: its kind, the method it is for, and its JSON."""

    kind: str  # "request" or "response"
    method: str
    body: str
    line: int

    @property
    def label(self) -> str:
        return f"api.md:{self.line} {self.kind} {self.method}"

    def parsed(self) -> Any:
        return simplejson.loads(self.body, use_decimal=True)


def fenced_blocks(text: str) -> Iterator[tuple[str, str, int]]:
    """Every fenced code block as (info string, body, line of the opening fence)."""
    lines = text.splitlines()
    index = 0
    while index < len(lines):
        opening = _FENCE.match(lines[index])
        if opening is None:
            index += 1
            continue
        start = index
        index += 1
        body: list[str] = []
        while index < len(lines) and lines[index] != "```":
            body.append(lines[index])
            index += 1
        assert index < len(lines), f"api.md:{start + 1}: unclosed code block"
        index += 1
        yield opening.group(1).strip(), "\n".join(body), start + 1


def example_blocks() -> list[Block]:
    blocks = []
    for info, body, line in fenced_blocks(API_DOC.read_text(encoding="utf-8")):
        words = info.split()
        if "request" not in words and "response" not in words:
            continue
        tagged = _EXAMPLE_INFO.match(info)
        assert tagged, f"api.md:{line}: tag examples as 'json request|response <method>': {info!r}"
        blocks.append(Block(tagged.group(1), tagged.group(2), body, line))
    return blocks


EXAMPLES = example_blocks()
REQUESTS = [b for b in EXAMPLES if b.kind == "request"]
RESPONSES = [b for b in EXAMPLES if b.kind == "response"]


def methods_section() -> str:
    text = API_DOC.read_text(encoding="utf-8")
    marker = "\n## Methods\n"
    assert marker in text, "docs/api.md has no '## Methods' section"
    return text.split(marker, 1)[1]


def registered_methods() -> set[str]:
    return {spec.name for spec in registry}


# -- (a) one section per method ------------------------------------------------


def test_every_method_has_a_section_and_every_section_a_method() -> None:
    headings = _METHOD_HEADING.findall(methods_section())
    assert len(headings) == len(set(headings)), "a method is documented twice"
    assert set(headings) == registered_methods()


def test_no_heading_anywhere_names_a_method_that_does_not_exist() -> None:
    headings = _METHOD_HEADING.findall(API_DOC.read_text(encoding="utf-8"))
    named = {h for h in headings if h.startswith(("energy.", "rpc."))}
    assert named <= registered_methods()


def test_every_method_has_an_example_request_and_response() -> None:
    methods = registered_methods()
    assert {b.method for b in REQUESTS} == methods
    assert {b.method for b in RESPONSES} == methods


def test_every_example_sits_under_its_own_methods_heading() -> None:
    current = None
    text = API_DOC.read_text(encoding="utf-8")
    by_line = {b.line: b for b in EXAMPLES}
    for number, line in enumerate(text.splitlines(), start=1):
        heading = _METHOD_HEADING.match(line)
        if heading:
            current = heading.group(1)
        if number in by_line:
            assert by_line[number].method == current, by_line[number].label


# -- (b) requests ----------------------------------------------------------------


@pytest.mark.parametrize("block", REQUESTS, ids=lambda b: b.label)
def test_example_request_is_a_valid_call_of_its_method(block: Block) -> None:
    request = block.parsed()
    assert isinstance(request, dict)
    assert request["jsonrpc"] == "2.0"
    assert "id" in request, "an example without id is a notification: it gets no response"
    assert request["method"] == block.method
    spec = registry.get(block.method)
    assert spec is not None, f"{block.method} is not a method"
    params = request.get("params", {})
    assert isinstance(params, dict), "examples pass params by name"
    spec.params.model_validate(params)
    if spec.signed:
        auth = params["auth"]
        assert isinstance(auth["timestamp"], int)
        assert re.fullmatch(r"[A-Za-z0-9_-]{16,64}", auth["nonce"])
        assert re.fullmatch(r"[0-9a-f]{128}", auth["signature"])
    else:
        assert "auth" not in params


def reading_signature(params: dict[str, Any]) -> str:
    """The example meter's signature over a reading's message (docs/meter-protocol.md)."""
    counter_wh = Decimal(params["kwh_reading"]) * 1000
    timestamp_ms = Decimal(params["timestamp"]) * 1000
    assert counter_wh == counter_wh.to_integral_value(), "kwh_reading is not whole Wh"
    assert timestamp_ms == timestamp_ms.to_integral_value(), "timestamp is not whole ms"
    message = readings.reading_message(
        params["provider_id"], params["meter_address"], int(counter_wh), int(timestamp_ms)
    )
    key = SigningKey(bytes.fromhex(EXAMPLE_METER_SEEDS[params["meter_address"]]))
    return signing.sign(key, message)


READINGS = [b for b in REQUESTS if b.method == READING_METHOD]


def test_there_are_reading_examples() -> None:
    assert READINGS


@pytest.mark.parametrize("block", READINGS, ids=lambda b: b.label)
def test_example_reading_carries_the_example_meters_real_signature(block: Block) -> None:
    # Not a placeholder: the credit shows the signature, so the response depends on it.
    params = block.parsed()["params"]
    assert params["signature"] == reading_signature(params)


# -- (c) responses -----------------------------------------------------------------


@pytest.mark.parametrize("block", RESPONSES, ids=lambda b: b.label)
def test_example_response_is_a_valid_answer_of_its_method(block: Block) -> None:
    response = block.parsed()
    assert isinstance(response, dict)
    assert response["jsonrpc"] == "2.0"
    spec = registry.get(block.method)
    assert spec is not None, f"{block.method} is not a method"
    assert ("result" in response) != ("error" in response)
    if "error" in response:
        error = response["error"]
        declared = {(e.code, e.reason) for e in spec.errors}
        declared |= {(code, r) for code, reasons in PROTOCOL_REASONS.items() for r in reasons}
        assert (error["code"], error["data"]["reason"]) in declared
        assert isinstance(error["message"], str)
        return
    result = response["result"]
    if block.method == "rpc.discover":
        # The example is cut down; check its shape, and below that it is part of the real one.
        assert result["openrpc"].startswith("1.")
        assert {m["name"] for m in result["methods"]} <= registered_methods()
    spec.result.model_validate(result)


# -- the examples are what the marketplace answers ------------------------------


def exchanges() -> list[tuple[Block, Block]]:
    """Each request with the response that follows it, in document order."""
    pairs: list[tuple[Block, Block]] = []
    pending: Block | None = None
    for block in EXAMPLES:
        if block.kind == "request":
            if pending is not None:
                pytest.fail(f"{pending.label} has no response after it")
            pending = block
        else:
            assert pending is not None, f"{block.label} follows no request"
            assert pending.method == block.method, block.label
            pairs.append((pending, block))
            pending = None
    if pending is not None:
        pytest.fail(f"{pending.label} has no response after it")
    return pairs


def is_part_of(example: Any, real: Any) -> bool:
    """True when ``example`` is ``real`` with members or list items left out."""
    if isinstance(example, dict):
        return isinstance(real, dict) and all(
            key in real and is_part_of(value, real[key]) for key, value in example.items()
        )
    if isinstance(example, list):
        return isinstance(real, list) and all(
            any(is_part_of(item, candidate) for candidate in real) for item in example
        )
    return bool(example == real)


def test_requests_and_responses_alternate() -> None:
    assert len(exchanges()) == len(REQUESTS) == len(RESPONSES)


def test_every_example_is_what_the_marketplace_answers(dynamodb: Any) -> None:
    keys = {name: SigningKey(bytes.fromhex(seed)) for name, seed in EXAMPLE_SEEDS.items()}
    now = [EXAMPLE_START]
    settings = Settings(
        marketplace_id=EXAMPLE_MARKETPLACE_ID,
        operator_public_key=keys["operator"].verify_key.encode().hex(),
        auth_window_seconds=300,
        receipt_signing_key=SecretStr(EXAMPLE_RECEIPT_SEED),
    )
    tables = tables_from_environment(dict(os.environ))
    market = Dependencies(
        settings=settings,
        unit_of_work=lambda: DynamoUnitOfWork(dynamodb, tables),
        clock=lambda: now[0],
        receipt_key=lambda: receipt_signing_key(settings),
    )
    dispatcher = Dispatcher(registry, market)
    fold_streams = StreamPump(dynamodb, market, tables)

    def clock_reads(when: int, label: str) -> None:
        assert when >= now[0], f"{label}: the story's clock runs backwards"
        now[0] = when

    for request_block, response_block in exchanges():
        request = request_block.parsed()
        params = request.get("params", {})
        if "auth" in params:
            # The document shows a placeholder signature; sign the call for real.
            auth = params["auth"]
            clock_reads(auth["timestamp"], request_block.label)
            message = signing.request_message(
                marketplace_id=EXAMPLE_MARKETPLACE_ID,
                method=request["method"],
                params=params,
                account=auth["account"],
                nonce=auth["nonce"],
                timestamp=auth["timestamp"],
            )
            auth["signature"] = signing.sign(keys[auth["account"]], message)
        elif request["method"] == READING_METHOD:
            # The meter sends each reading as it takes it; its signature is real
            # (test_example_reading_carries_the_example_meters_real_signature).
            clock_reads(math.ceil(Decimal(params["timestamp"])), request_block.label)
        fold_streams()  # the stream consumers have caught up with the story so far
        answer = dispatcher.handle(simplejson.dumps(request, use_decimal=True).encode())
        assert answer is not None, request_block.label
        got = simplejson.loads(answer, use_decimal=True)
        shown = response_block.parsed()
        if request["method"] == "rpc.discover":
            assert is_part_of(shown, got), response_block.label
        else:
            if os.environ.get("SHOW_DOC_ANSWERS") and shown != got:
                print(response_block.label, simplejson.dumps(got, use_decimal=True, indent=2))
            assert shown == got, response_block.label


# -- (d) README and links --------------------------------------------------------


def test_readme_names_the_two_commands() -> None:
    readme = README.read_text(encoding="utf-8")
    assert "make run" in readme
    assert "make test" in readme


_LINK = re.compile(r"\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
_REFERENCE_DEFINITION = re.compile(r"^\s*\[[^\]]+\]:\s*(\S+)", re.M)


def _without_code(text: str) -> str:
    text = re.sub(r"^```.*?^```", "", text, flags=re.S | re.M)
    return re.sub(r"`[^`\n]*`", "", text)


def _anchors(path: Path) -> set[str]:
    anchors = set()
    for heading in re.findall(r"^#{1,6} (.+?)\s*$", _without_code_blocks(path), re.M):
        slug = re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")
        anchors.add(slug)
    return anchors


def _without_code_blocks(path: Path) -> str:
    return re.sub(r"^```.*?^```", "", path.read_text(encoding="utf-8"), flags=re.S | re.M)


def relative_links(path: Path) -> list[str]:
    text = _without_code(path.read_text(encoding="utf-8"))
    targets = _LINK.findall(text) + _REFERENCE_DEFINITION.findall(text)
    return [t for t in targets if not re.match(r"^[a-z][a-z0-9+.-]*:", t, re.I)]


@pytest.mark.parametrize("path", MARKDOWN_FILES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_points_to_an_existing_file(path: Path) -> None:
    assert path.exists(), f"{path.relative_to(ROOT)} is missing"
    for target in relative_links(path):
        file_part, _, anchor = target.partition("#")
        linked = (path.parent / file_part).resolve() if file_part else path
        assert linked.exists(), f"{path.relative_to(ROOT)} links to missing {target}"
        if anchor and linked.suffix == ".md":
            assert anchor.lower() in _anchors(linked), f"{path.relative_to(ROOT)}: no #{anchor}"


def test_the_docs_are_linked_from_the_readme() -> None:
    links = {t.partition("#")[0] for t in relative_links(README)}
    assert {"docs/api.md", "docs/architecture.md", "docs/meter-protocol.md"} <= links


def test_the_deployment_guide_names_the_template_parameters_and_outputs() -> None:
    """docs/deploy.md tells an operator what to pass and what to read back."""
    import yaml

    template = yaml.safe_load((ROOT / "infra" / "template.yaml").read_text())
    guide = (ROOT / "docs" / "deploy.md").read_text()
    for name in [*template["Parameters"], "EndpointURL", "IngestDeadLetterQueueUrl"]:
        assert name in guide, name
    assert "--merge-template infra/template.yaml" in guide
