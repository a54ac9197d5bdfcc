"""Hide the secrets in a URL before it is printed, logged or stored.

Works on the text, not on a parsed URL: a URL that does not parse (quoted, a leading space, no
scheme, an unescaped `@` in the password) must not come out with its password in clear, which is
what happens when a parser gives up and the caller falls back to the raw string.
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit

MASK = "***"

# [scheme://]user:password@host: the password runs to the last `@` before the host, so an
# unescaped `@` inside it is hidden too. The scheme is optional ("u:PW@h/db").
_USERINFO = re.compile(
    r"(?P<head>(?:[A-Za-z][A-Za-z0-9+.\-]*://)?[^\s:/@'\"?#]*:)"
    r"(?!//)(?P<password>[^\r\n]*)"
    r"(?P<tail>@[^\s@/'\"?#]*)"
)
# ?password=..., &sslpassword=..., ;token=..., &aws_secret_access_key=..., &sig=... (Azure SAS),
# &X-Amz-Signature=..., &X-Amz-Credential=... in a query string: any key that names a password,
# token, secret, signature, credential or key.
_QUERY_SECRET = re.compile(
    r"(?P<key>[?&;](?:[\w.\-]*(?:pass(?:word|wd)?|pwd|token|secret|signature|credential|key)"
    r"[\w.\-]*|sig)=)"
    r"(?P<value>[^&;\s'\"#]*)",
    re.IGNORECASE,
)


def redact_url(url: str) -> str:
    """`url` with every password (user info and query string) replaced by ***."""
    # The query first: a query password holding an `@` would otherwise look like user info.
    text = _QUERY_SECRET.sub(lambda m: m.group("key") + MASK, url)
    return _USERINFO.sub(_hide_password, text)


def redact_text(text: str) -> str:
    """Free text (an error message, a tool's stderr) with every URL's secrets hidden.

    Word by word, so the prose around a URL survives (`redact_url` over a whole line masks all
    from the line's first `word:` to the URL's `@`); a `user:password@` still spanning words (a
    password with a space) is then masked over the line as `redact_url` masks it.
    """
    words = "".join(redact_url(word) for word in re.split(r"(\s+)", text))
    return _USERINFO.sub(_hide_unmasked_password, words)


def has_credentials(url: str) -> bool:
    """Whether `url` carries a user, a password or a query-string secret."""
    try:
        userinfo = "@" in urlsplit(url.strip()).netloc
    except ValueError:  # e.g. an unbalanced [ in the host
        userinfo = False
    return userinfo or redact_url(url) != url


def without_userinfo(url: str) -> str:
    """`url` without its `user:password@` (the request gets them from elsewhere)."""
    parts = urlsplit(url.strip())
    return parts._replace(netloc=parts.netloc.rpartition("@")[2]).geturl()


def _hide_password(match: re.Match[str]) -> str:
    return match.group("head") + MASK + match.group("tail")


def _hide_unmasked_password(match: re.Match[str]) -> str:
    if match.group("password").endswith(MASK):  # a URL `redact_url` masked already
        return match.group(0)
    return _hide_password(match)
