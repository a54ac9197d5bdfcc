"""Kubernetes grammars: what each accepts and refuses, and that the chart's values.schema.json
carries the very same patterns (Python and Helm must agree on what reaches a pod spec)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from pydantic import BaseModel, ValidationError

from cifar_ops.kube import grammar
from tests.conftest import REPO

SCHEMA = json.loads((REPO / "charts" / "cifar-ops" / "values.schema.json").read_text())
HOSTILE = ["x\n  hostNetwork: true", "x: y", "{{ .Release.Name }}", 'a"b', "a'b", "a # b", "a\n"]


class Probe(BaseModel):
    label: grammar.DnsLabel = "a"
    subdomain: grammar.DnsSubdomain = "a"
    value: grammar.LabelValue = ""
    key: grammar.LabelKey = "a"
    quantity: grammar.Quantity = "1"
    image: grammar.ImageReference = "a"
    tolerations: list[grammar.Toleration] = []


@pytest.mark.parametrize(
    ("field", "good"),
    [
        ("label", ["ml", "team-a", "a" * 63]),
        (
            "subdomain",
            ["batch-low", "high.priority.example.com", ".".join(["a" * 63] * 3 + ["b" * 61])],
        ),
        ("value", ["", "true", "A_b.c-1", "a" * 63]),
        ("key", ["team", "nvidia.com/gpu.present", "example.com/A_b", "a." * 100 + "b/c"]),
        ("quantity", ["4", "500m", "2.5", "16Gi", 8, 0.5]),
        (
            "image",
            [
                "nginx",
                "evil/img",
                "ghcr.io/cifar-ops/cifar-ops-gpu:0.1.0",
                "localhost:5000/a__b/c--d.e:v1_2",
                "registry.example.com/ml/x@sha256:" + "0" * 64,
                "registry.example.com/ml/x:1.0@sha256:" + "0" * 64,
            ],
        ),
    ],
)
def test_grammar_accepts_kubernetes_spellings(field: str, good: list[Any]) -> None:
    for value in good:
        Probe(**{field: value})


@pytest.mark.parametrize(
    ("field", "bad"),
    [
        ("label", ["ML", "a.b", "-a", "a-", "a" * 64, ""]),
        ("subdomain", ["High", "a..b", "a_b", "a" * 254, ""]),
        ("value", ["-a", "a b", "a/b", "a" * 64]),
        ("key", ["/a", "a/", "Example.com/a", "a b", "a/" + "b" * 64, "a" * 254 + "/b", ""]),
        ("quantity", ["lots", "-1", "1e3x", "", True]),
        ("image", ["evil/Img", "a:b:c", "img:", "img@sha256:abc", "", "a//b", "a" * 460]),
    ],
)
def test_grammar_refuses_the_rest(field: str, bad: list[Any]) -> None:
    for value in [*bad, *HOSTILE]:
        with pytest.raises(ValidationError):
            Probe(**{field: value})


def test_errors_say_what_is_allowed() -> None:
    with pytest.raises(ValidationError) as caught:
        Probe(subdomain="high\n  hostNetwork: true")
    assert "must be a DNS-1123 subdomain" in str(caught.value)


def test_tolerations_follow_the_pod_spec_rules() -> None:
    probe = Probe(
        tolerations=[
            {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"},
            {"key": "spot", "value": "yes", "effect": "NoExecute", "tolerationSeconds": 30},
            {"operator": "Exists"},
        ]
    )
    assert [t.to_pod_spec() for t in probe.tolerations] == [
        {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"},
        {"key": "spot", "value": "yes", "effect": "NoExecute", "tolerationSeconds": 30},
        {"operator": "Exists"},
    ]
    assert Probe.model_validate(probe.model_dump(mode="json")) == probe  # a stored config reloads
    for bad in (
        {"key": "a", "operator": "Exists", "value": "b"},
        {"value": "b"},
        {"key": "a", "tolerationSeconds": 5, "effect": "NoSchedule"},
        {"key": "a", "operator": "In"},
        {"key": "a", "effect": "Sometimes"},
        {"key": "a", "command": ["sh"]},
        {"key": "a\n  hostPID: true"},
    ):
        with pytest.raises(ValidationError):
            Probe(tolerations=[bad])


@pytest.mark.parametrize(
    ("definition", "pattern", "max_length"),
    [
        ("dnsLabel", grammar.DNS_LABEL, grammar.DNS_LABEL_MAX),
        ("dnsSubdomain", grammar.DNS_SUBDOMAIN, grammar.DNS_SUBDOMAIN_MAX),
        ("labelKey", grammar.QUALIFIED_NAME, grammar.QUALIFIED_NAME_MAX),
        ("labelValue", grammar.LABEL_VALUE, grammar.LABEL_VALUE_MAX),
    ],
)
def test_schema_definitions_carry_the_grammar(
    definition: str, pattern: str, max_length: int
) -> None:
    assert SCHEMA["definitions"][definition]["pattern"] == pattern
    assert SCHEMA["definitions"][definition]["maxLength"] == max_length


def test_schema_image_and_quantity_carry_the_grammar() -> None:
    image = SCHEMA["properties"]["image"]["properties"]
    assert image["repository"]["pattern"] == grammar.IMAGE_REPOSITORY
    assert image["tag"]["pattern"] == grammar.IMAGE_TAG
    assert image["digest"]["pattern"] == grammar.IMAGE_DIGEST
    (text, _number) = SCHEMA["definitions"]["quantity"]["oneOf"]
    assert text["pattern"] == grammar.QUANTITY and text["maxLength"] == grammar.QUANTITY_MAX
    env = SCHEMA["properties"]["job"]["properties"]["extraEnv"]["items"]["properties"]["name"]
    assert env["pattern"] == grammar.ENV_NAME


@pytest.mark.parametrize("definition", ["labels", "annotations", "resources"])
def test_schema_maps_key_by_the_label_key_grammar(definition: str) -> None:
    mapping = SCHEMA["definitions"][definition]
    assert list(mapping["patternProperties"]) == [grammar.QUALIFIED_NAME]
    assert mapping["additionalProperties"] is False
    assert mapping["propertyNames"] == {"$ref": "#/definitions/labelKey"}
