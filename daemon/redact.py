"""Redaction of secrets before anything leaves the process.

Everything opsmedic sends or keeps outside its own memory (LLM prompts, Slack messages, log
lines, stored evidence such as pod log lines) goes through `Redactor.text` or `Redactor.value`.

Placeholder scheme: every redacted span becomes `[REDACTED:<kind>]`, where `<kind>` names what
was found, so a reader knows what was there without seeing it:

    private-key     PEM private keys (RSA, EC, DSA, OPENSSH, ENCRYPTED, PKCS#8), BEGIN..END,
                    and the base64 lines before an END line whose BEGIN was cut off
    password        the password of `scheme://user:password@host` (user and host are kept),
                    and values of `password=` / `passwd:` / `passphrase` assignments
    bearer, basic   `Bearer <token>` / `Basic <base64>` credentials (the scheme word is kept)
    authorization   other `Authorization:` header credentials (Digest, Negotiate, token, ...)
    aws-access-key  AKIA... / ASIA... access key ids
    github          ghp_, gho_, ghu_, ghs_, ghr_ and github_pat_ tokens
    slack           xoxb-, xoxp-, xoxa-, xoxs-, xoxr-, xoxe- and xapp- tokens
    slack-webhook   the secret path of https://hooks.slack.com/services/... (the prefix is kept)
    openai          sk-..., sk-proj-..., sk-svcacct-..., sk-admin-...
    anthropic       sk-ant-...
    google-api-key  AIza + 35 characters
    stripe          sk_live_, rk_live_ (and _test_) keys
    jwt             three base64url segments, the first starting with eyJ
    secret          values of `secret=` / `client_secret:` / `aws_secret_access_key=` ... and
                    the secret values configured in `Redactor.secrets`
    token           values of `token=` / `access_token:` / `"refresh_token": "..."` ...
    api-key         values of `api_key=` / `apikey:` / `X-Api-Key:` ...
    email, ip       e-mail addresses and IPv4/IPv6 addresses, only when enabled

Assignments are recognised in the forms `key=value`, `key: value`, `key := value`,
`"key": "value"` and `'key': 'value'`; only the value is replaced. A key matches when it ends
with one of the words above (`DB_PASSWORD`, `PGPASSWORD`, `spring.datasource.password`,
`x-auth-token`), so `max_tokens`, `token_file` or `secretName` are left alone. `Redactor.value`
also replaces a whole string stored under such a key (and under `Authorization`/`Cookie` keys).

Redaction is idempotent: a placeholder never matches a pattern, so redacting twice gives the
same text as redacting once. Known limits: an unquoted value ends at whitespace, `,`, `;` or `&`;
a private key split over several strings (one log line per string) is only caught in the string
holding its BEGIN line, which is redacted to its end.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

PLACEHOLDER = "[REDACTED:{kind}]"
_PLACEHOLDER_RE = re.compile(r"\[REDACTED:[a-z0-9-]+\]")


def _mark(kind: str) -> str:
    return PLACEHOLDER.format(kind=kind)


def _looks_random(token: str) -> bool:
    """A credential rather than a word: a digit, an inner capital or a base64 symbol."""
    if len(token) < 8:
        return False
    return (
        any(c.isdigit() for c in token)
        or any(c.isupper() for c in token[1:])
        or any(c in "+/=" for c in token)
    )


_B64URL = r"A-Za-z0-9_-"

_PRIVATE_KEY = re.compile(
    r"-----BEGIN[A-Z0-9 ]*PRIVATE KEY(?: BLOCK)?-----"
    r".*?(?:-----END[A-Z0-9 ]*PRIVATE KEY(?: BLOCK)?-----|\Z)",
    re.DOTALL,
)
_PRIVATE_KEY_END = re.compile(r"-----END[A-Z0-9 ]*PRIVATE KEY(?: BLOCK)?-----")
_BASE64_LINE = re.compile(r"[ \t]*[A-Za-z0-9+/=]{16,}[ \t]*\r?")


def _private_key_tails(s: str) -> str:
    """The tail of a private key whose BEGIN line was cut off (a log read with a line or byte
    limit): the base64 lines right above an END line, and that line, become a placeholder.
    Walks back from each END line, so the time is linear in the text."""
    out: list[str] = []
    done = 0  # s[:done] is settled
    for end in _PRIVATE_KEY_END.finditer(s):
        line = max(s.rfind("\n", done, end.start()) + 1, done)  # where the END line starts
        if end.start() < done or s[line : end.start()].strip(" \t"):
            continue  # not at the start of its line
        start = line
        while start > done:
            above = max(s.rfind("\n", done, start - 1) + 1, done)
            if not _BASE64_LINE.fullmatch(s, above, start - 1):
                break
            start = above
        if start < line:
            out += [s[done:start], _mark("private-key")]
            done = end.end()
    return "".join(out) + s[done:]


_SLACK_WEBHOOK = re.compile(
    r"(?P<keep>https?://hooks\.slack\.com/(?:services|workflows|triggers)/)[A-Za-z0-9_/-]+"
)

# scheme://user:password@host, the user may be empty (redis://:password@host)
_URL_PASSWORD = re.compile(
    r"(?P<keep>(?<![A-Za-z0-9+.-])[A-Za-z][A-Za-z0-9+.-]*://[^\s:/@]*:)(?!\[REDACTED:)[^\s/@]+(?=@)"
)

_TOKENS: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("anthropic", re.compile(rf"(?<![{_B64URL}])sk-ant-[{_B64URL}]{{20,}}")),
    (
        "openai",
        re.compile(
            rf"(?<![{_B64URL}])sk-(?:(?:proj|svcacct|admin)-[{_B64URL}]{{20,}}"
            rf"|[A-Za-z0-9]{{32,}}(?![{_B64URL}]))"
        ),
    ),
    (
        "github",
        re.compile(
            r"(?<![A-Za-z0-9_])(?:gh[pousr]_[A-Za-z0-9]{20,}|github_pat_[A-Za-z0-9_]{20,})"
            r"(?![A-Za-z0-9_])"
        ),
    ),
    ("slack", re.compile(r"(?<![A-Za-z0-9-])(?:xox[abposre]|xapp)-[A-Za-z0-9-]{10,}")),
    ("stripe", re.compile(r"(?<![A-Za-z0-9_])(?:sk|rk)_(?:live|test)_[A-Za-z0-9]{10,}")),
    ("google-api-key", re.compile(rf"(?<![{_B64URL}])AIza[{_B64URL}]{{35}}(?![{_B64URL}])")),
    ("aws-access-key", re.compile(r"(?<![A-Z0-9])(?:AKIA|ASIA)[A-Z0-9]{16}(?![A-Z0-9])")),
    (
        "jwt",
        re.compile(rf"(?<![{_B64URL}])eyJ[{_B64URL}]{{8,}}\.[{_B64URL}]{{8,}}\.[{_B64URL}]*"),
    ),
)

# `Authorization: <scheme> <credentials>`; the scheme is kept. The atomic group makes the
# scheme word final, so `Authorization: Bearer [REDACTED:bearer]` is left as it is.
_AUTH_HEADER = re.compile(
    r"(?P<keep>\b(?:proxy-)?authorization[\"']?[ \t]*[:=][ \t]*[\"']?"
    r"(?>(?:(?P<scheme>[A-Za-z][A-Za-z0-9-]*)[ \t]+)?))"
    r"(?!\[REDACTED:)(?P<cred>[^\s\"',;]+)",
    re.IGNORECASE,
)
_BEARER = re.compile(
    r"(?P<keep>\bbearer[ \t]+)(?P<cred>[A-Za-z0-9._~+/-]+=*)(?![A-Za-z0-9._~+/=-])",
    re.IGNORECASE,
)
_BASIC = re.compile(r"(?P<keep>\bBasic[ \t]+)(?P<cred>[A-Za-z0-9+/]+={0,2})(?![A-Za-z0-9+/=])")

_KEYWORD = (
    r"(?P<kw>passw(?:or)?d|passphrase|secret(?:[_.-]?access)?(?:[_.-]?key)?"
    r"|token|api[_.-]?key|private[_.-]?key|access[_.-]?key)"
)
# `key=value`, `key: value`, `"key": "value"`; not the user of scheme://token:password@host
_ASSIGNMENT = re.compile(
    r"(?P<keep>(?<![A-Za-z0-9_.-])(?<!//)[A-Za-z0-9_.-]*?"
    rf"{_KEYWORD}[\"']?[ \t]*(?::=|[:=])[ \t]*)"
    r"(?:\"(?P<dq>(?:[^\"\\\n]|\\.)*)\"|'(?P<sq>[^'\n]*)'|(?P<bare>[^\s\"',;&]+))",
    re.IGNORECASE,
)
_SECRET_KEY = re.compile(
    rf"[A-Za-z0-9_.-]*?{_KEYWORD}|(?P<header>(?:proxy-)?authorization|(?:set-)?cookie)",
    re.IGNORECASE,
)

_EMAIL = re.compile(
    r"(?<![A-Za-z0-9._%+-])[A-Za-z0-9._%+-]+@[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?"
    r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)*\.[A-Za-z]{2,}(?![A-Za-z0-9-])"
)

_V4 = r"(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)(?:\.(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)){3}"
_H = r"[0-9A-Fa-f]{1,4}"
_V6 = (
    rf"(?:(?:{_H}:){{7}}{_H}"
    rf"|(?:{_H}:){{1,4}}:{_V4}"
    rf"|::(?:[fF]{{4}}(?::0{{1,4}})?:)?{_V4}"
    rf"|(?:{_H}:){{1,6}}:{_H}"
    rf"|(?:{_H}:){{1,5}}(?::{_H}){{1,2}}"
    rf"|(?:{_H}:){{1,4}}(?::{_H}){{1,3}}"
    rf"|(?:{_H}:){{1,3}}(?::{_H}){{1,4}}"
    rf"|(?:{_H}:){{1,2}}(?::{_H}){{1,5}}"
    rf"|{_H}:(?::{_H}){{1,6}}"
    rf"|:(?::{_H}){{1,7}}"
    rf"|(?:{_H}:){{1,7}}:)"
)
_IP = re.compile(
    rf"(?<![\w:.])(?:{_V6}(?![\w:]|\.\d)|{_V4}(?!\w|\.\d))",
)


def _keyword_kind(keyword: str) -> str:
    word = keyword.lower()
    if word.startswith("pass"):
        return "password"
    if word == "token":
        return "token"
    if word.startswith("api"):
        return "api-key"
    if word.startswith("private"):
        return "private-key"
    return "secret"


def _assignment(match: re.Match[str]) -> str:
    quoted = match.group("dq") if match.group("dq") is not None else match.group("sq")
    value = quoted if quoted is not None else match.group("bare")
    if not value or _PLACEHOLDER_RE.fullmatch(value):
        return match.group(0)
    mark = _mark(_keyword_kind(match.group("kw")))
    if quoted is None:
        return match.group("keep") + mark
    quote = '"' if match.group("dq") is not None else "'"
    return f"{match.group('keep')}{quote}{mark}{quote}"


def _auth_header(match: re.Match[str]) -> str:
    scheme = (match.group("scheme") or "").lower()
    kind = scheme if scheme in ("bearer", "basic") else "authorization"
    return match.group("keep") + _mark(kind)


def _credential(kind: str) -> Callable[[re.Match[str]], str]:
    """`Bearer <x>` / `Basic <x>` outside a header: only when <x> looks like a credential."""

    def replace(match: re.Match[str]) -> str:
        if not _looks_random(match.group("cred")):
            return match.group(0)
        return match.group("keep") + _mark(kind)

    return replace


_PASSES: tuple[tuple[re.Pattern[str], str | Callable[[re.Match[str]], str]], ...] = (
    (_SLACK_WEBHOOK, lambda m: m.group("keep") + _mark("slack-webhook")),
    *((pattern, _mark(kind)) for kind, pattern in _TOKENS),
    (_URL_PASSWORD, lambda m: m.group("keep") + _mark("password")),
    (_AUTH_HEADER, _auth_header),
    (_BEARER, _credential("bearer")),
    (_BASIC, _credential("basic")),
    (_ASSIGNMENT, _assignment),
)


@dataclass(frozen=True)
class Redactor:
    secrets: tuple[str, ...] = ()
    emails: bool = False
    ips: bool = False
    _configured: re.Pattern[str] | None = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        values = sorted({s for s in self.secrets if len(s) >= 4}, key=len, reverse=True)
        object.__setattr__(self, "secrets", tuple(self.secrets))
        if values:
            # placeholders first, so a configured value inside one is never replaced again
            alternatives = "|".join(re.escape(v) for v in values)
            pattern = re.compile(rf"(?P<placeholder>{_PLACEHOLDER_RE.pattern})|{alternatives}")
            object.__setattr__(self, "_configured", pattern)

    def text(self, s: str) -> str:
        if self._configured is not None:
            s = self._configured.sub(
                lambda m: m.group(0) if m.group("placeholder") else _mark("secret"), s
            )
        s = _private_key_tails(_PRIVATE_KEY.sub(_mark("private-key"), s))
        for pattern, replacement in _PASSES:
            s = pattern.sub(replacement, s)
        if self.emails:
            s = _EMAIL.sub(_mark("email"), s)
        if self.ips:
            s = _IP.sub(_mark("ip"), s)
        return s

    def value(self, obj: Any) -> Any:
        """Redact every string inside dicts, lists and tuples; dict keys are kept as they are.
        A string stored under a secret-looking key (`password`, `api_key`, `Authorization`)
        is replaced whole."""
        if isinstance(obj, str):
            return self.text(obj)
        if isinstance(obj, dict):
            return {key: self._item(key, item) for key, item in obj.items()}
        if isinstance(obj, list):
            return [self.value(item) for item in obj]
        if isinstance(obj, tuple):
            items = [self.value(item) for item in obj]
            return type(obj)(*items) if hasattr(obj, "_fields") else tuple(items)
        return obj

    def _item(self, key: Any, item: Any) -> Any:
        if isinstance(key, str) and isinstance(item, str) and item:
            match = _SECRET_KEY.fullmatch(key)
            if match and not _PLACEHOLDER_RE.fullmatch(item):
                if match.group("header"):
                    return _mark("authorization")
                return _mark(_keyword_kind(match.group("kw")))
        return self.value(item)


DEFAULT = Redactor()


class RedactingFilter(logging.Filter):
    """A log handler filter: the formatted message is redacted before any handler writes it."""

    def __init__(self, redactor: Redactor) -> None:
        super().__init__()
        self.redactor = redactor

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        redacted = self.redactor.text(message)
        if redacted != message:
            record.msg, record.args = redacted, None
        if record.exc_info and record.exc_info[1] is not None:
            record.exc_text = self.redactor.text(
                logging.Formatter().formatException(record.exc_info)
            )
        return True


def redact_logs(redactor: Redactor, logger: logging.Logger | None = None) -> None:
    """Redact every record that reaches the handlers of `logger` (default: the root)."""
    for handler in (logger or logging.getLogger()).handlers:
        handler.filters = [f for f in handler.filters if not isinstance(f, RedactingFilter)]
        handler.addFilter(RedactingFilter(redactor))


def redact(s: str) -> str:
    return DEFAULT.text(s)
