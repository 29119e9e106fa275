"""Start-up validation of the pin configuration: every error names its config line."""

from __future__ import annotations

import pytest

from hal.gpio import (
    ButtonConfig,
    GpioConfig,
    GpioConfigError,
    LedConfig,
    RelayConfig,
    validate_config,
)


def problems(config: GpioConfig) -> list[str]:
    with pytest.raises(GpioConfigError) as info:
        validate_config(config)
    return info.value.problems


def test_good_config_passes() -> None:
    validate_config(
        GpioConfig(
            buttons=(ButtonConfig("door", 17), ButtonConfig("call", 27)),
            leds=(LedConfig("ring", 22),),
            relays=(RelayConfig("strike", 24),),
        )
    )


@pytest.mark.parametrize(
    ("bcm", "expected"),
    [
        (28, "BCM 28 is not a header GPIO"),
        (-1, "BCM -1 is not a header GPIO"),
        (0, "BCM 0 is reserved for the HAT ID EEPROM"),
        (1, "BCM 1 is reserved for the HAT ID EEPROM"),
        (True, "must be an integer"),
        ("17", "must be an integer"),
    ],
)
def test_invalid_pins_name_the_line(bcm: int, expected: str) -> None:
    (msg,) = problems(GpioConfig(leds=(LedConfig("ring", bcm, "intercom.toml line 12"),)))
    assert msg.startswith("intercom.toml line 12: led 'ring'")
    assert expected in msg


def test_conflict_names_both_lines() -> None:
    cfg = GpioConfig(
        buttons=(ButtonConfig("door", 17, "intercom.toml line 12"),),
        leds=(LedConfig("ring", 17, "intercom.toml line 15"),),
    )
    (msg,) = problems(cfg)
    assert msg == (
        "intercom.toml line 15: led 'ring': BCM 17 is already used by "
        "intercom.toml line 12: button 'door'"
    )


def test_all_problems_reported_at_once() -> None:
    cfg = GpioConfig(
        buttons=(
            ButtonConfig("door", 17, "a.toml line 1"),
            ButtonConfig("door", 18, "a.toml line 2"),
            ButtonConfig("bell", 19, "a.toml line 3", debounce=0.5, long_press=0.4),
        ),
        relays=(
            RelayConfig("strike", 40, "a.toml line 4"),
            RelayConfig("gate", 20, "a.toml line 5", max_pulse=0),
        ),
    )
    msgs = problems(cfg)
    assert len(msgs) == 4
    assert "a.toml line 2: button 'door': name already used by the button at a.toml line 1" in msgs
    assert any(m.startswith("a.toml line 3: button 'bell'") and "long_press" in m for m in msgs)
    assert any(m.startswith("a.toml line 4: relay 'strike'") for m in msgs)
    assert any(m.startswith("a.toml line 5: relay 'gate'") and "max_pulse" in m for m in msgs)
    text = str(GpioConfigError(msgs))
    assert text.startswith("invalid GPIO configuration:")


def test_same_name_in_different_roles_is_fine() -> None:
    validate_config(
        GpioConfig(buttons=(ButtonConfig("door", 17),), relays=(RelayConfig("door", 18),))
    )
