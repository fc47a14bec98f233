"""Settings fail fast naming the variable; JSON log lines carry identity and never secrets."""

from __future__ import annotations

import io
import json
import logging
from pathlib import Path
from typing import ClassVar

import pytest
from pydantic import SecretStr
from pydantic_settings import SettingsConfigDict

from homelab_common.logs import REDACTED, JsonFormatter, configure_logging
from homelab_common.settings import ServiceSettings, SettingsError, env_name, load_settings, load_settings_or_exit


class DemoSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="HOMELAB_DEMO_", frozen=True)
    service_name: ClassVar[str] = "demo"

    port: int = 8080
    zone: str = "home.arpa"
    tsig_secret: SecretStr | None = None


def test_settings_come_from_prefixed_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOMELAB_DEMO_PORT", "5353")
    monkeypatch.setenv("HOMELAB_DEMO_ZONE", "lab.example")
    settings = load_settings(DemoSettings)
    assert (settings.port, settings.zone) == (5353, "lab.example")
    assert env_name(DemoSettings, "port") == "HOMELAB_DEMO_PORT"


def test_bad_setting_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOMELAB_DEMO_PORT", "not-a-number")
    with pytest.raises(SettingsError, match=r"demo: invalid settings: HOMELAB_DEMO_PORT: .*integer"):
        load_settings(DemoSettings)


def test_secret_comes_from_a_mounted_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "HOMELAB_DEMO_TSIG_SECRET").write_text("c2VjcmV0")
    monkeypatch.setenv("HOMELAB_SECRETS_DIR", str(tmp_path))
    settings = load_settings(DemoSettings)
    assert settings.tsig_secret is not None
    assert settings.tsig_secret.get_secret_value() == "c2VjcmV0"
    assert "c2VjcmV0" not in repr(settings)


def _line(record_extra: dict[str, object], message: str = "record created") -> dict[str, object]:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter("demo"))
    logger = logging.getLogger("test.json")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    try:
        logger.info(message, extra=record_extra)
    finally:
        logger.removeHandler(handler)
    line = stream.getvalue()
    assert line.count("\n") == 1
    parsed: dict[str, object] = json.loads(line)
    return parsed


def test_log_line_is_one_json_object_with_identity() -> None:
    line = _line({"object": "apps/web", "kind": "Ingress"})
    assert line["msg"] == "record created"
    assert (line["service"], line["level"], line["object"], line["kind"]) == ("demo", "info", "apps/web", "Ingress")
    assert str(line["ts"]).endswith("Z")


def test_secret_fields_are_redacted_even_when_nested() -> None:
    line = _line({"k3s_token": "K10abc", "request": {"headers": {"Authorization": "Bearer x"}, "path": "/x"}})
    assert line["k3s_token"] == REDACTED
    assert line["request"] == {"headers": {"Authorization": REDACTED}, "path": "/x"}


def test_configure_logging_is_idempotent() -> None:
    configure_logging("demo", "debug")
    configure_logging("demo", "info")
    ours = [h for h in logging.getLogger().handlers if getattr(h, "_homelab", False)]
    assert len(ours) == 1
    assert logging.getLogger().level == logging.INFO


def test_a_service_main_exits_2_naming_the_bad_variable(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("HOMELAB_DEMO_PORT", "eighty")
    with pytest.raises(SystemExit) as info:
        load_settings_or_exit(DemoSettings)
    assert info.value.code == 2
    assert "HOMELAB_DEMO_PORT" in capsys.readouterr().err
