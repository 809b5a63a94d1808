"""The listener's settings: one set of defaults, a config file on top, options on top of that."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from kernelconv.engines.select import EngineSpec
from kernelconv.errors import UsageError
from kernelconv.pacs.config import ListenConfig
from kernelconv.pacs.forward import Destination
from kernelconv.pipeline import ConvertOptions


def test_defaults_are_those_of_convert() -> None:
    cfg = ListenConfig()
    assert cfg.engine_spec() == EngineSpec()
    assert cfg.batch_size == ConvertOptions(target="x").batch_size
    assert cfg.series_number_offset == ConvertOptions(target="x").series_number_offset
    assert (cfg.port, cfg.ae_title, cfg.stable_seconds, cfg.retries) == (11112, "KERNELCONV",
                                                                          30.0, 5)


def test_options_override_the_file_which_overrides_the_defaults(tmp_path: Path) -> None:
    path = tmp_path / "listen.json"
    path.write_text(json.dumps({"to": "B30f", "port": 104, "allow_ae": "PACS, CT1",
                                "forward": ["PACS@10.0.0.5:104"], "method": "filter",
                                "source": "B70f", "stable_seconds": 5}))
    cfg = ListenConfig().updated(ListenConfig.read_file(path), str(path))
    cfg = cfg.updated({"port": 11113, "to": None, "forward": (), "allow_ae": None,
                       "batch_size": 8}, "options")
    assert cfg.target == "B30f" and cfg.port == 11113 and cfg.batch_size == 8
    assert cfg.allow_ae == ("PACS", "CT1")
    assert cfg.forward == (Destination("PACS", "10.0.0.5", 104),)
    assert cfg.stable_seconds == 5.0 and cfg.method == "filter"
    assert cfg.origins["port"] == "options" and cfg.origins["target"] == str(path)
    options = cfg.convert_options({"LUNG": "B70f"})
    assert options.source_override == "B70f" and options.kernel_map == {"LUNG": "B70f"}
    assert options.target == "B30f" and options.batch_size == 8 and options.merge


@pytest.mark.parametrize(("settings", "message"), [
    ({"colour": "blue"}, "listen.json: unknown setting(s) colour"),
    ({"port": 70000}, "listen.json: port: 70000 is not in 1..65535"),
    ({"port": "abc"}, "listen.json: port:"),
    ({"stable_seconds": 0.01}, "listen.json: stable_seconds: 0.01 is below 0.1 s"),
    ({"unconvertible": "drop"}, "listen.json: unconvertible: 'drop' is not one of ignore"),
    ({"forward": ["nohost"]}, "listen.json: forward: 'nohost': expected AET@HOST:PORT"),
])
def test_bad_settings_are_one_line_usage_errors(settings: dict, message: str) -> None:
    with pytest.raises(UsageError) as exc:
        ListenConfig().updated(settings, "listen.json")
    assert str(exc.value).startswith(message)
    assert "\n" not in str(exc.value)


def test_target_and_a_destination_are_required() -> None:
    with pytest.raises(UsageError, match="--to KERNEL is required"):
        ListenConfig().validated()
    with pytest.raises(UsageError, match="--out-dir DIR and/or --forward"):
        ListenConfig(target="B30f").validated()
    assert ListenConfig(target="B30f", out=Path("x")).validated().out == Path("x")
