"""alignpro.secrets: what counts as a secret, and its redaction from config trees and free text."""

from alignpro.secrets import declare_key_env, redact, redact_text


def test_redact_hides_secret_values_but_keeps_env_var_names():
    cfg = {"logger": {"api_key": "abc", "api_key_env": "WANDB_API_KEY", "token": None}, "lam": 0.2}
    out = redact(cfg)
    assert out == {"logger": {"api_key": "<redacted>", "api_key_env": "WANDB_API_KEY", "token": None}, "lam": 0.2}


def test_redact_text_hides_overrides_and_secret_env_values(monkeypatch):
    monkeypatch.setenv("MY_SERVICE_API_KEY", "sk-verysecret123")
    text = "failed: +judge.api_key=abc123 sent sk-verysecret123 to the server"
    clean = redact_text(text)
    assert "abc123" not in clean and "sk-verysecret123" not in clean
    assert "+judge.api_key=<redacted>" in clean and "<MY_SERVICE_API_KEY>" in clean
    assert redact_text("nothing to hide") == "nothing to hide"


def test_redact_text_keeps_placeholders_and_the_punctuation_around_a_value():
    text = "export it (export OPENAI_API_KEY=...), or +frozen.api_key=abcdef123)"
    assert redact_text(text) == "export it (export OPENAI_API_KEY=...), or +frozen.api_key=<redacted>)"


def test_a_declared_key_variable_is_redacted_whatever_its_name(monkeypatch):
    monkeypatch.setenv("MY_LLM_CREDENTIAL", "marker-credential-0042")
    assert "marker-credential-0042" in redact_text("sent marker-credential-0042")  # not a secret-looking name
    declare_key_env("MY_LLM_CREDENTIAL")
    assert redact_text("sent marker-credential-0042") == "sent <MY_LLM_CREDENTIAL>"
