"""Configuration: precedence, validation messages, secrets, and the example file."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from wyoming_openai.config_sources import env_name, flag_name, load_settings, setting_names
from wyoming_openai.errors import ConfigError

ROOT = Path(__file__).resolve().parent.parent
KEY = "sk-test-secret-value-do-not-print"


def test_defaults_file_env_cli_precedence(tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text(
        "stt:\n  model: from-file\n  prompt: file prompt\ntts:\n  voice: from-file\n  speed: 1.25\n"
    )
    env = {
        "OPENAI_API_KEY": KEY,
        "WYOMING_OPENAI_STT_MODEL": "from-env",
        "WYOMING_OPENAI_TTS_VOICE": "from-env",
    }
    settings = load_settings(["--config", str(config), "--tts-voice", "from-cli"], env)
    assert settings.stt.model == "from-env"  # env beats file
    assert settings.stt.prompt == "file prompt"  # file beats default
    assert settings.tts.voice == "from-cli"  # cli beats env
    assert settings.tts.speed == 1.25
    assert settings.stt.mode == "realtime"  # default
    assert settings.api_key() == KEY


def test_sdk_environment_variables_are_read() -> None:
    settings = load_settings(
        [],
        {
            "OPENAI_API_KEY": KEY,
            "OPENAI_BASE_URL": "http://localhost:8000/v1/",
            "OPENAI_ORG_ID": "org-1",
            "OPENAI_PROJECT_ID": "proj-1",
        },
    )
    assert settings.openai.base_url == "http://localhost:8000/v1"
    assert settings.openai.organization == "org-1"
    assert settings.openai.project == "proj-1"


def test_lists_from_environment_and_flags() -> None:
    settings = load_settings(
        ["--tts-voices", "af_heart, am_adam"],
        {"OPENAI_API_KEY": KEY, env_name("stt.languages"): "en,de"},
    )
    assert settings.tts.voices == ["af_heart", "am_adam"]
    assert settings.stt.languages == ["en", "de"]


def test_api_key_file(tmp_path: Path) -> None:
    key_file = tmp_path / "key"
    key_file.write_text(KEY + "\n")
    settings = load_settings(["--api-key-file", str(key_file)], {})
    assert settings.api_key() == KEY
    assert KEY not in repr(settings)
    assert KEY not in str(settings.model_dump())


@pytest.mark.parametrize(
    ("argv", "env", "yaml_text", "expected"),
    [
        (["--engine", "openai"], {}, None, "openai.api_key: missing"),
        (["--stt-mode", "websocket"], {"OPENAI_API_KEY": KEY}, None, "stt.mode"),
        (
            [],
            {"OPENAI_API_KEY": KEY, "WYOMING_OPENAI_TTS_SPEED": "9"},
            None,
            "WYOMING_OPENAI_TTS_SPEED",
        ),
        ([], {"OPENAI_API_KEY": KEY}, "stt:\n  modle: x\n", "stt.modle: unknown setting"),
        ([], {"OPENAI_API_KEY": KEY}, "colour: blue\n", "colour: unknown setting"),
        ([], {"OPENAI_API_KEY": KEY}, "stt: [1, 2\n", "not valid YAML"),
        (["--uri", "http://0.0.0.0:10300"], {"OPENAI_API_KEY": KEY}, None, "uri"),
        (["--openai-base-url", "api.openai.com"], {"OPENAI_API_KEY": KEY}, None, "openai.base_url"),
    ],
)
def test_bad_settings_name_the_setting(
    tmp_path: Path, argv: list[str], env: dict[str, str], yaml_text: str | None, expected: str
) -> None:
    if yaml_text is not None:
        config = tmp_path / "config.yaml"
        config.write_text(yaml_text)
        argv = [*argv, "--config", str(config)]
    with pytest.raises(ConfigError) as info:
        load_settings(argv, env)
    message = str(info.value)
    assert expected in message
    assert "\n" not in message
    assert KEY not in message


def test_cli_exits_2_with_one_line_and_no_traceback(tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text("stt:\n  mode: batch\n")
    result = subprocess.run(
        [sys.executable, "-m", "wyoming_openai", "--config", str(config)],
        capture_output=True,
        text=True,
        env={"OPENAI_API_KEY": KEY, "PATH": "/usr/bin:/bin"},
        timeout=60,
        cwd=ROOT,
    )
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "stt.mode" in lines[0]
    assert "Traceback" not in result.stderr


def test_example_config_documents_every_setting_and_loads() -> None:
    example = ROOT / "config.example.yaml"
    text = example.read_text()
    tree = yaml.safe_load(text)
    for name in setting_names():
        section, _, key = name.rpartition(".")
        where = text.split(f"\n{section}:", 1)[1] if section else text
        assert f"{key}:" in where, f"{name} is not documented in config.example.yaml"
    assert tree["stt"]["mode"] == "realtime"
    settings = load_settings(["--config", str(example)], {"OPENAI_API_KEY": KEY})
    assert settings.tts.voice == "alloy"


def test_every_setting_has_a_flag_except_the_key() -> None:
    from wyoming_openai.config_sources import build_arg_parser

    help_text = build_arg_parser().format_help()
    for name in setting_names():
        if name == "openai.api_key":
            assert "--openai-api-key " not in help_text
            continue
        assert flag_name(name) in help_text


@pytest.mark.parametrize("source", ["file", "env", "flag"])
def test_a_renamed_setting_still_works_with_one_warning(
    source: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """``tts.realtime_fallback`` is now ``tts.realtime_move``; the old name keeps working."""
    argv: list[str] = []
    env = {"OPENAI_API_KEY": KEY}
    if source == "file":
        config = tmp_path / "config.yaml"
        config.write_text("tts:\n  realtime_fallback: true\n")
        argv = ["--config", str(config)]
    elif source == "env":
        env["WYOMING_OPENAI_TTS_REALTIME_FALLBACK"] = "true"
    else:
        argv = ["--tts-realtime-fallback", "true"]
    with caplog.at_level("WARNING", logger="wyoming_openai.config_sources"):
        settings = load_settings(argv, env)
    assert settings.tts.realtime_move is True
    (warning,) = [r.getMessage() for r in caplog.records]
    assert "tts.realtime_fallback" in warning and "tts.realtime_move" in warning
    assert "\n" not in warning
