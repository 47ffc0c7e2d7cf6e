"""Redaction: every planted secret is gone, the text around it and ordinary log lines are not.

Token-shaped values are assembled at run time, so no credential-shaped literal sits in the
repository for secret scanners to flag."""

from __future__ import annotations

from collections import namedtuple

import pytest

from daemon.redact import DEFAULT, Redactor, redact

ALNUM = "a1B2c3D4e5F6g7H8i9J0"


def body(n: int, alphabet: str = ALNUM) -> str:
    return (alphabet * (n // len(alphabet) + 1))[:n]


def pem(label: str) -> str:
    lines = [body(64) for _ in range(3)]
    return "\n".join(
        [f"-----BEGIN {label}PRIVATE KEY-----", *lines, f"-----END {label}PRIVATE KEY-----"]
    )


JWT = "eyJ" + "hbGciOiJIUzI1NiJ9" + ".eyJ" + "zdWIiOiIxMjM0NTY3ODkwIn0" + "." + body(43)

# (kind, secret, line it is planted in: `{}` marks the secret)
CASES: list[tuple[str, str, str]] = [
    ("bearer", body(32), "GET /api -H 'Authorization: Bearer {}' -> 401"),
    ("bearer", body(24), "retrying with bearer {} after refresh"),
    ("basic", "dXNlcjpwYXNzd29yZDEyMw==", "Authorization: Basic {} (from proxy)"),
    ("basic", "YWRtaW46czNjcjN0", "sent Basic {} to upstream"),
    ("authorization", "YIIGhgYJKoZIhvcSAQICAQ", "header Authorization: Negotiate {} ok"),
    ("password", "s3cr3t-P4ss", "connecting to postgres://app:{}@db.internal:5432/orders"),
    ("password", "only-a-pw", "cache at redis://:{}@cache:6379/0 is up"),
    ("private-key", pem(""), "loaded key\n{}\ntrailing line"),
    ("private-key", pem("RSA "), "key: {} end"),
    ("private-key", pem("EC "), "{}"),
    ("private-key", pem("OPENSSH "), "ssh key {} stored"),
    ("private-key", pem("ENCRYPTED "), "{} <- encrypted"),
    ("aws-access-key", "AKIA" + body(16, "ABCDEFGHIJ234567"), "using key id {} in us-east-1"),
    ("aws-access-key", "ASIA" + body(16, "QRSTUVWXYZ234567"), "session {}, expires soon"),
    ("secret", body(40, "wJalrXUtnFEMI/K7MDENG+bPxRfiCY"), "aws_secret_access_key={}\nregion=x"),
    ("secret", body(40, "wJalrXUtnFEMI/K7MDENG+bPxRfiCY"), "AWS_SECRET_ACCESS_KEY: {} # env"),
    ("github", "ghp_" + body(36), "git push with {} failed"),
    ("github", "gho_" + body(36), "oauth={} scope=repo"),
    ("github", "ghu_" + body(36), "user token {}."),
    ("github", "ghs_" + body(36), "clone https://x-access-token:{}@github.com/o/r.git"),
    ("github", "ghr_" + body(36), "refresh {}"),
    ("github", "github_pat_" + body(22) + "_" + body(59), "PAT {} expired"),
    ("slack", "xox" + "b-" + "1234567890-1234567890123-" + body(24), "slack bot {} ready"),
    ("slack", "xox" + "p-" + "1234567890-1234567890-" + body(32), "user {} used"),
    ("slack", "xox" + "a-" + "2-" + body(30), "app {} used"),
    ("slack", "xap" + "p-1-A0123456789-" + "1234567890-" + body(32), "socket mode {}"),
    (
        "slack-webhook",
        "T00000000/B00000000/" + body(24),
        "posting to https://hooks.slack.com/services/{} now",
    ),
    ("openai", "sk-" + body(48), "OPENAI_KEY {} loaded"),
    ("openai", "sk-proj-" + body(60) + "_" + body(20) + "-" + body(30), "model call with {}"),
    ("anthropic", "sk-ant-api03-" + body(80) + "-" + body(12), "anthropic {} set"),
    ("google-api-key", "AIza" + body(35), "maps?key2={}&q=x"),
    ("stripe", "sk_" + "live_" + body(24), "charge via {} ok"),
    ("stripe", "rk_" + "live_" + body(24), "restricted {} ok"),
    ("jwt", JWT, "id token {} verified"),
    ("password", "hunter2", "login password={} user=bob"),
    ("password", "letmein", "passwd: {}"),
    ("password", "correct horse battery", '{{"password": "{}", "user": "bob"}}'),
    ("password", "pa55", "DB_PASSWORD='{}' PGHOST=db"),
    ("password", "Zz9!xx", "spring.datasource.password := {}"),
    ("secret", "k8s-signing-value", "secret={}&next=1"),
    ("secret", "cl1ent-s3cret", '{{"client_secret":"{}"}}'),
    ("token", "tok-abcdef", "token={}"),
    ("token", "refresh.value.here", "{{'refresh_token': '{}'}}"),
    ("token", "x-auth-v4lue", "X-Auth-Token: {}"),
    ("api-key", "k3y-value-9", "api_key={}"),
    ("api-key", "k3yvalue9", "apikey: {}"),
    ("api-key", "abc-def-123", "X-Api-Key: {} sent"),
]


def plant(template: str, secret: str) -> tuple[str, list[str]]:
    """The line with the secret in it, and the surrounding text that must survive."""
    return template.replace("{}", secret).replace("{{", "{").replace("}}", "}"), [
        part.replace("{{", "{").replace("}}", "}") for part in template.split("{}") if part
    ]


@pytest.mark.parametrize(("kind", "secret", "template"), CASES, ids=[c[0] for c in CASES])
def test_planted_secret_is_redacted_and_context_kept(kind: str, secret: str, template: str) -> None:
    line, context = plant(template, secret)
    out = redact(line)
    assert secret not in out
    assert f"[REDACTED:{kind}]" in out, out
    for part in context:
        assert part in out, (part, out)
    assert redact(out) == out


def test_private_key_secret_lines_all_gone() -> None:
    key = pem("RSA ")
    out = redact(f"before\n{key}\nafter")
    assert out == "before\n[REDACTED:private-key]\nafter"
    assert not any(line in out for line in key.splitlines()[1:-1])


def test_private_key_without_end_is_redacted_to_the_end() -> None:
    key = pem("").rsplit("\n", 1)[0]  # cut before the END line, as a truncated log would
    assert redact(f"key {key}") == "key [REDACTED:private-key]"


def test_certificates_and_public_keys_are_kept() -> None:
    cert = f"-----BEGIN CERTIFICATE-----\n{body(64)}\n-----END CERTIFICATE-----"
    public = f"-----BEGIN PUBLIC KEY-----\n{body(64)}\n-----END PUBLIC KEY-----"
    assert redact(cert) == cert
    assert redact(public) == public


def test_url_password_keeps_user_host_and_path() -> None:
    out = redact("dsn=mysql://report_user:Pa%24%24w0rd@10.1.2.3:3306/sales?ssl=true")
    assert out == "dsn=mysql://report_user:[REDACTED:password]@10.1.2.3:3306/sales?ssl=true"


def test_url_user_named_like_a_key_keeps_the_host() -> None:
    out = redact("https://oauth-token:abc123def@git.example.com/o/r.git")
    assert out == "https://oauth-token:[REDACTED:password]@git.example.com/o/r.git"


def test_url_without_password_is_kept() -> None:
    for line in ("https://example.com:8443/path?a=b", "ssh://git@github.com/o/r.git"):
        assert redact(line) == line


def test_only_the_value_of_an_assignment_is_replaced() -> None:
    out = redact('user=bob password="two words" token=abc123 mode=fast')
    assert out == 'user=bob password="[REDACTED:password]" token=[REDACTED:token] mode=fast'


def test_json_escaped_quote_inside_a_value() -> None:
    out = redact(r'{"password": "a\"b c", "next": 1}')
    assert out == '{"password": "[REDACTED:password]", "next": 1}'


def test_words_that_only_contain_a_keyword_are_kept() -> None:
    line = (
        "max_tokens=512 tokens_used: 98 token_file: /var/run/secrets/opsmedic/slack-token "
        "secretName: opsmedic-slack password_hash_algo=argon2"
    )
    assert redact(line) == line


def test_bearer_and_basic_in_prose_are_kept() -> None:
    for line in (
        "Bearer token missing from request",
        "bearer authentication failed for client",
        "Basic setup complete",
        "Basic auth is disabled",
    ):
        assert redact(line) == line


ORDINARY = [
    "2024-05-01T12:30:45.123456Z INFO  starting opsmedic 0.1.0 (pid 4242)",
    "May  1 12:30:45 host systemd[1]: Started opsmedic.service - self-healing ops daemon.",
    "incident 123e4567-e89b-12d3-a456-426614174000 resolved after 4m30s",
    "deployed commit 3f2c1e9a7b6d5c4e3f2a1b0c9d8e7f6a5b4c3d2e (short 3f2c1e9)",
    "pod web-7d9c6b5f4-abcde in namespace shop is CrashLoopBackOff (restarts: 7)",
    "job nightly-etl-28573920-x7k2p failed: BackoffLimitExceeded",
    "image registry.example.com/team/app:v1.2.3 pulled in 2.5s",
    "image ghcr.io/opsmedic/opsmedic:0.1.0@sha256:" + "0123456789abcdef" * 4,
    "probe took 250ms, timeout 30s, retry in 1h30m, p99=1.25s",
    'level=info msg="scaled deployment checkout from 3 to 5 replicas" took=12ms',
    "GET /healthz HTTP/1.1 200 13 - kube-probe/1.30",
    "error: context deadline exceeded (Client.Timeout exceeded while awaiting headers)",
    "Back-off restarting failed container app in pod web-7d9c6b5f4-abcde_shop(0d9f)",
    "rollout history: revision 4 -> 3, replicaset web-5f6d8c7b9",
    "token bucket refilled: 10 tokens/s, max_tokens=100",
    "authorization.k8s.io/decision=allow rbac.authorization.k8s.io/v1 ClusterRole opsmedic",
    "checkout v1.2.3.4-rc1, chart 1.2.3, build 2024.05.01",
    "temperature 21.5C at 12:30:45, mac aa:bb:cc:dd:ee:ff, std::vector<int> size 3",
    "task sk-worker-7d9c6b5f4-abcde done; disk-usage=81%",
    "",
]


@pytest.mark.parametrize("line", ORDINARY)
def test_ordinary_lines_are_unchanged(line: str) -> None:
    assert redact(line) == line
    assert Redactor(secrets=("not-in-these-lines",), emails=True, ips=True).text(line) == line


def test_emails_and_ips_are_optional() -> None:
    line = "user alice@example.com from 203.0.113.7 and 2001:db8::8a2e:370:7334 via ::1"
    assert redact(line) == line
    out = Redactor(emails=True, ips=True).text(line)
    assert out == "user [REDACTED:email] from [REDACTED:ip] and [REDACTED:ip] via [REDACTED:ip]"
    assert Redactor(emails=True).text(line).count("[REDACTED") == 1
    assert Redactor(ips=True).text(line).count("[REDACTED") == 3


@pytest.mark.parametrize(
    ("address", "rest"),
    [
        ("10.0.0.1", ":8080 is down."),
        ("192.168.1.254", "/24"),
        ("fe80::1", "%eth0"),
        ("::ffff:10.0.0.1", "]"),
        ("2001:0db8:85a3:0000:0000:8a2e:0370:7334", " ok"),
        ("2001:db8::", " prefix"),
    ],
)
def test_ip_forms(address: str, rest: str) -> None:
    out = Redactor(ips=True).text(f"[{address}{rest}")
    assert out == f"[[REDACTED:ip]{rest}"


def test_configured_secrets_are_redacted_verbatim() -> None:
    r = Redactor(secrets=("correct-horse", "correct-horse-battery", "abc"))
    out = r.text("a correct-horse-battery b correct-horse c abc d Correct-Horse")
    # longest first; values shorter than 4 characters are ignored; matching is exact
    assert out == "a [REDACTED:secret] b [REDACTED:secret] c abc d Correct-Horse"
    assert r.text(out) == out


def test_configured_secret_inside_an_url_or_a_placeholder() -> None:
    r = Redactor(secrets=("s3cr3tvalue", "secret", "REDACTED"))
    out = r.text("postgres://app:s3cr3tvalue@db/x and secret")
    assert out == "postgres://app:[REDACTED:secret]@db/x and [REDACTED:secret]"
    assert r.text(out) == out


def test_redactor_is_a_value_object() -> None:
    assert Redactor(secrets=("abcd",)) == Redactor(secrets=("abcd",))
    assert DEFAULT == Redactor()
    assert redact("token=x1") == DEFAULT.text("token=x1")
    with pytest.raises(AttributeError):
        DEFAULT.emails = True  # type: ignore[misc]


Point = namedtuple("Point", ["label", "value"])


def test_nested_structures() -> None:
    gh = "ghp_" + body(36)
    jwt = JWT
    aws = "AKIA" + body(16, "ABCDEFGHIJ234567")
    evidence = {
        "pod": "web-7d9c6b5f4-abcde",
        "restarts": 7,
        "ready": False,
        "ratio": 0.5,
        "missing": None,
        "raw": b"password=bytes-are-left-alone",
        "logs": [
            f"2024-05-01T12:30:45Z calling api with Authorization: Bearer {jwt}",
            ("tuple", f"push with {gh}", 3),
            {"deeper": [f"key {aws}", "plain line"]},
        ],
        "point": Point("key", f"token={gh}"),
        "password": "plain-value-under-a-secret-key",
        "Authorization": "Bearer short",
        "headers": {"X-Api-Key": "abc", "Cookie": "session=xyz", "max_tokens": "100"},
        "empty_token": "",
    }
    out = Redactor(secrets=("plain line",)).value(evidence)
    flat = repr(out)
    for secret in (jwt, gh, aws, "plain-value-under-a-secret-key", "short", "xyz", "plain line"):
        assert secret not in flat, secret
    assert list(out) == list(evidence)  # keys kept as they are, in order
    assert list(out["headers"]) == ["X-Api-Key", "Cookie", "max_tokens"]
    assert out["pod"] == "web-7d9c6b5f4-abcde"
    assert (out["restarts"], out["ready"], out["ratio"], out["missing"]) == (7, False, 0.5, None)
    assert out["raw"] is evidence["raw"]
    assert out["logs"][0] == (
        "2024-05-01T12:30:45Z calling api with Authorization: Bearer [REDACTED:jwt]"
    )
    assert out["logs"][1] == ("tuple", "push with [REDACTED:github]", 3)
    assert out["logs"][2] == {"deeper": ["key [REDACTED:aws-access-key]", "[REDACTED:secret]"]}
    assert isinstance(out["point"], Point)
    assert out["point"] == Point("key", "token=[REDACTED:github]")
    assert out["password"] == "[REDACTED:password]"
    assert out["Authorization"] == "[REDACTED:authorization]"
    assert out["headers"] == {
        "X-Api-Key": "[REDACTED:api-key]",
        "Cookie": "[REDACTED:authorization]",
        "max_tokens": "100",
    }
    assert out["empty_token"] == ""
    assert evidence["password"] == "plain-value-under-a-secret-key"  # input untouched
    assert Redactor(secrets=("plain line",)).value(out) == out


def test_scalars_pass_through_value() -> None:
    for obj in (1, 2.5, None, True, b"token=x1", {1, 2}):
        assert DEFAULT.value(obj) is obj
    assert DEFAULT.value("token=x1") == "token=[REDACTED:token]"


def test_everything_at_once_is_idempotent() -> None:
    text = "\n".join(plant(template, secret)[0] for _, secret, template in CASES)
    text += "\nalice@example.com 10.0.0.1 fe80::1 " + "\n".join(ORDINARY)
    r = Redactor(secrets=("k8s-signing-value", "pa55"), emails=True, ips=True)
    once = r.text(text)
    assert r.text(once) == once
    for _, secret, _ in CASES:
        assert secret not in once
    assert redact(redact(text)) == redact(text)
