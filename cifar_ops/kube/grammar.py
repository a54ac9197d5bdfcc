"""Kubernetes grammars of the values a config hands to a pod spec: names, labels, quantities,
image references and tolerations.

Text that reaches the chart is checked here, before Helm renders it, so a value can only ever be
the one field it was written for. The chart's values.schema.json carries the same patterns (a
test keeps them equal); they are written in the regex subset that Python `re`, pydantic's Rust
`regex` and Go's RE2 (Helm's schema check) read alike, and are matched against the whole value.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, model_validator

_LABEL_PART = r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?"
_NAME_PART = r"[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?"
_DOMAIN_PART = r"([a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_PATH_PART = r"[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*"
_IMAGE_NAME = rf"({_DOMAIN_PART}(\.{_DOMAIN_PART})*(:[0-9]+)?/)?{_PATH_PART}(/{_PATH_PART})*"
_IMAGE_TAG = r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}"
_IMAGE_DIGEST = r"sha256:[a-f0-9]{64}"

# Each pattern, with the longest value Kubernetes accepts there.
DNS_LABEL = rf"^{_LABEL_PART}$"  # namespaces
DNS_LABEL_MAX = 63
DNS_SUBDOMAIN = rf"^{_LABEL_PART}(\.{_LABEL_PART})*$"  # priority classes, Secrets, claims
DNS_SUBDOMAIN_MAX = 253
LABEL_VALUE = rf"^({_NAME_PART})?$"  # may be empty
LABEL_VALUE_MAX = 63
QUALIFIED_NAME = rf"^({_LABEL_PART}(\.{_LABEL_PART})*/)?{_NAME_PART}$"  # label/annotation keys
QUALIFIED_NAME_MAX = DNS_SUBDOMAIN_MAX + 1 + 63
QUANTITY = r"^[0-9]+(\.[0-9]+)?(m|k|M|G|T|P|E|Ki|Mi|Gi|Ti|Pi|Ei)?$"
QUANTITY_MAX = 64
IMAGE_REPOSITORY = rf"^{_IMAGE_NAME}$"
IMAGE_REFERENCE = rf"^{_IMAGE_NAME}(:{_IMAGE_TAG})?(@{_IMAGE_DIGEST})?$"
IMAGE_MAX = 255 + 1 + 128 + 1 + 71
IMAGE_TAG = rf"^({_IMAGE_TAG})?$"
IMAGE_DIGEST = rf"^({_IMAGE_DIGEST})?$"
ENV_NAME = r"^[-._a-zA-Z][-._a-zA-Z0-9]*$"

_DNS_WORDS = "lowercase letters, digits and '-', starting and ending with a letter or digit"
_NAME_WORDS = "letters, digits, '-', '_' and '.', starting and ending with a letter or digit"


def _grammar(pattern: str, max_length: int, allowed: str) -> AfterValidator:
    """A validator that refuses text outside `pattern`, saying what is allowed."""
    compiled = re.compile(pattern)

    def check(value: str) -> str:
        if len(value) > max_length or not compiled.fullmatch(value):
            raise ValueError(f"must be {allowed}")
        return value

    return AfterValidator(check)


def _split_key(value: str) -> str:
    """A label key's prefix is a DNS subdomain of at most 253 characters."""
    prefix, _, _ = value.rpartition("/")
    if len(prefix) > DNS_SUBDOMAIN_MAX:
        raise ValueError(
            f"must have a prefix (before '/') of at most {DNS_SUBDOMAIN_MAX} characters"
        )
    return value


DnsLabel = Annotated[
    str,
    _grammar(DNS_LABEL, DNS_LABEL_MAX, f"a DNS-1123 label: at most 63 {_DNS_WORDS}"),
]
DnsSubdomain = Annotated[
    str,
    _grammar(
        DNS_SUBDOMAIN,
        DNS_SUBDOMAIN_MAX,
        f"a DNS-1123 subdomain: at most 253 {_DNS_WORDS}, dot-separated parts alike",
    ),
]
LabelValue = Annotated[
    str,
    _grammar(LABEL_VALUE, LABEL_VALUE_MAX, f"a label value: empty or at most 63 {_NAME_WORDS}"),
]
NonEmptyLabelValue = Annotated[LabelValue, Field(min_length=1)]
LabelKey = Annotated[
    str,
    _grammar(
        QUALIFIED_NAME,
        QUALIFIED_NAME_MAX,
        f"a label key: an optional DNS-1123 subdomain and '/', then at most 63 {_NAME_WORDS}",
    ),
    AfterValidator(_split_key),
]
# `--set resources.cpu=8` parses as a number, kept as text.
Quantity = Annotated[
    str,
    BeforeValidator(
        lambda v: str(v) if isinstance(v, int | float) and not isinstance(v, bool) else v
    ),
    _grammar(
        QUANTITY,
        QUANTITY_MAX,
        "a Kubernetes quantity: a number with an optional suffix m, k, M, G, T, P, E, Ki, Mi, Gi,"
        " Ti, Pi or Ei (4, 500m, 2.5, 16Gi)",
    ),
]
ImageReference = Annotated[
    str,
    _grammar(
        IMAGE_REFERENCE,
        IMAGE_MAX,
        "an image reference: [registry[:port]/]path[:tag][@sha256:<64 hex>], the path in"
        " lowercase letters, digits and '.', '_', '-' separators",
    ),
]


class Toleration(BaseModel):
    """One pod toleration, spelled as in a pod spec (tolerationSeconds)."""

    model_config = ConfigDict(
        extra="forbid",
        validate_assignment=True,
        validate_by_name=True,
        validate_by_alias=True,
        serialize_by_alias=True,
    )

    key: LabelKey | None = None
    operator: Literal["Exists", "Equal"] | None = None
    value: LabelValue | None = None
    effect: Literal["NoSchedule", "PreferNoSchedule", "NoExecute"] | None = None
    toleration_seconds: int | None = Field(default=None, alias="tolerationSeconds")

    @model_validator(mode="after")
    def _consistent(self) -> Toleration:
        if self.operator == "Exists" and self.value:
            raise ValueError("a toleration with operator Exists takes no value")
        if not self.key and self.operator != "Exists":
            raise ValueError("a toleration without a key needs operator Exists")
        if self.toleration_seconds is not None and self.effect != "NoExecute":
            raise ValueError("tolerationSeconds applies only to effect NoExecute")
        return self

    def to_pod_spec(self) -> dict[str, Any]:
        """The toleration as the chart renders it: set fields only, Kubernetes spelling."""
        return self.model_dump(mode="json", exclude_none=True)
