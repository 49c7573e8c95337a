"""PII and secrets scrubbing: what is replaced, what is left alone, and the counts."""

from __future__ import annotations

import sysconfig
from pathlib import Path

from datatrove.data import Document

from moss_data.corpus.pii import PIIConfig, PIIScrubber, scrub

STDLIB = Path(sysconfig.get_paths()["stdlib"])


def test_real_author_emails_in_library_code_are_replaced():
    text = (STDLIB / "email" / "__init__.py").read_text()
    assert "email-sig@python.org" in text
    out, counts = scrub(text, PIIConfig())
    assert "email-sig@python.org" not in out and "<EMAIL>" in out
    assert counts["pii_email"] == text.count("@python.org")


def test_public_ips_replaced_private_and_doc_addresses_kept():
    text = "server 8.8.8.8 and 2001:4860:4860:0:0:0:0:8888; local 127.0.0.1, lan 192.168.1.20, mail admin@example.com"
    out, counts = scrub(text, PIIConfig())
    assert out == (
        "server <IP_ADDRESS> and <IP_ADDRESS>; local 127.0.0.1, lan 192.168.1.20, mail admin@example.com"
    )
    assert counts == {"pii_ip": 2}


def test_secrets_in_code_replaced_with_names_kept():
    aws_doc_example = "AKIA" + "IOSFODNN7EXAMPLE"  # AWS's documented example key id
    github = "ghp_" + "x1Y2z3" * 6
    key_block = "-----BEGIN RSA PRIVATE KEY-----\nMIIEow" + "A" * 60 + "\n-----END RSA PRIVATE KEY-----"
    code = (
        f'AWS_ACCESS_KEY_ID = "{aws_doc_example}"\n'
        f"token = '{github}'\n"
        'DB_PASSWORD = "s3cr3t-Passw0rd!"\n'
        'password = "<KEY>"\n'  # already a placeholder: untouched, not counted
        f"PEM = '''{key_block}'''\n"
    )
    out, counts = scrub(code, PIIConfig())
    assert aws_doc_example not in out and github not in out and "s3cr3t" not in out and "MIIEow" not in out
    assert 'DB_PASSWORD = "<KEY>"' in out
    assert counts == {
        "secret_aws_access_key": 1,
        "secret_github_token": 1,
        "secret_assigned_secret": 1,
        "secret_private_key": 1,
    }


def test_switches_turn_kinds_off():
    text = "write to someone@python.org from 8.8.4.4"
    out, counts = scrub(text, PIIConfig(emails=False))
    assert "someone@python.org" in out and counts == {"pii_ip": 1}


def test_scrubber_step_counts_in_stats_and_metadata():
    step = PIIScrubber()
    docs = [Document(text="mail me: a.b@python.org or c@python.org", id="1"), Document(text="nothing here", id="2")]
    out = list(step.run(iter(docs)))
    assert out[0].metadata["pii"] == {"pii_email": 2} and "pii" not in out[1].metadata
    stats = step.stats.stats.to_dict()
    assert stats["docs_with_pii"] == 1 and stats["total"] == 2
    assert (stats["pii_email"]["total"] if isinstance(stats["pii_email"], dict) else stats["pii_email"]) == 2
