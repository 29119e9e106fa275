"""The behaviour state machine, driven with a fake clock: every rule of issue 6."""

from __future__ import annotations

from pathlib import Path

import pytest

from firmware.behaviour import (
    Answer,
    Behaviour,
    CallPhase,
    CallPlaced,
    CallStateChanged,
    Command,
    DialRequested,
    DtmfReceived,
    FaultChanged,
    Hangup,
    HangupRequested,
    IncomingCall,
    LedState,
    Log,
    MakeCall,
    PhoneState,
    PlayTone,
    PulseRelay,
    RegistrationChanged,
    RegStatus,
    ShowLed,
    StopTone,
    ToneKind,
    caller_matches,
)
from firmware.config import (
    ButtonSettings,
    Config,
    IntercomSettings,
    LedSettings,
    RelaySettings,
    load_config,
)
from hal.debounce import ButtonLongPressed, ButtonPressed, ButtonReleased
from hal.gpio import DOUBLE_FLASH, FAST_BLINK, HEARTBEAT, SLOW_BLINK, STEADY
from sipstack.records import replace

FLAT_A = "sip:flat-a@pbx.example.com"
FLAT_B = "sip:flat-b@pbx.example.com"
BELL = ButtonSettings("bell", 17, "call", "t line 1", targets=(FLAT_A, FLAT_B))
ANSWER = ButtonSettings("answer", 5, "answer", "t line 2")
HANGUP = ButtonSettings("hangup", 6, "hangup", "t line 3")
SPEED = ButtonSettings("speed", 13, "speed_dial", "t line 4", targets=(FLAT_B,))
EXIT = ButtonSettings("exit", 19, "door", "t line 5")
LEDS = (
    LedSettings("status", 22, "status", "t line 6"),
    LedSettings("ring", 23, "ringing", "t line 7"),
    LedSettings("call", 24, "call", "t line 8"),
)
INTERCOM = IntercomSettings(
    profile="intercom",
    auto_answer=True,
    trusted=("sip:*@pbx.example.com",),
    door_code="4711",
    door_code_from=(FLAT_A,),
    ring_timeout=20.0,
    max_call_seconds=0,
)
ACC = 3


class Phone:
    """A Behaviour with a fake clock and a command log."""

    def __init__(self, settings: IntercomSettings = INTERCOM, **kw: object) -> None:
        self.now = 1000.0
        kw.setdefault("buttons", (BELL, HANGUP, SPEED, EXIT))
        kw.setdefault("leds", LEDS)
        kw.setdefault("relay_pulse", 3.0)
        self.b = Behaviour(settings, now=self.now, call_account=ACC, **kw)  # type: ignore[arg-type]
        self.initial = self.b.drain_commands()

    def st(self) -> PhoneState:
        """The state (a call, so mypy does not narrow it across events)."""
        return self.b.state

    def led(self) -> LedState:
        return self.b.led_state

    def feed(self, event: object) -> list[Command]:
        self.b.handle_event(event, self.now)  # type: ignore[arg-type]
        return self.b.drain_commands()

    def press(self, name: str) -> list[Command]:
        return self.feed(ButtonPressed(name, self.now))

    def advance(self, seconds: float) -> list[Command]:
        """Jump the clock, firing every timer on the way (at its own deadline)."""
        end = self.now + seconds
        out: list[Command] = []
        while (when := self.b.get_timer()) is not None and when <= end:
            self.now = when
            self.b.handle_timer(when)
            out += self.b.drain_commands()
        self.now = end
        return out

    def state(self, call_id: int, phase: CallPhase, status: int = 0) -> list[Command]:
        return self.feed(CallStateChanged(call_id, phase, status))

    def dial_answered(self, call_id: int = 10) -> None:
        """Bell -> first target answers."""
        (make,) = of(self.press("bell"), MakeCall)
        self.feed(CallPlaced(make.ref, call_id))
        self.state(call_id, CallPhase.CONFIRMED)
        assert self.st() is PhoneState.IN_CALL

    def dtmf(self, call_id: int, digits: str) -> list[Command]:
        out: list[Command] = []
        for d in digits:
            out += self.feed(DtmfReceived(call_id, d))
        return out


def of(commands: list[Command], kind: type) -> list:  # type: ignore[type-arg]
    return [c for c in commands if isinstance(c, kind)]


def without_logs(commands: list[Command]) -> list[Command]:
    return [c for c in commands if not isinstance(c, Log)]


def leds(commands: list[Command]) -> dict[str, object]:
    return {c.name: c.pattern for c in of(commands, ShowLed)}


# -- LEDs and registration ----------------------------------------------------------


def test_initial_leds_and_registration_states() -> None:
    p = Phone(accounts=(1, 2))
    assert leds(p.initial) == {"status": None, "ring": None, "call": None}
    assert p.led() is LedState.NOT_REGISTERED
    assert leds(p.feed(RegistrationChanged(1, False))) == {"status": SLOW_BLINK}
    assert p.led() is LedState.REGISTERING
    # unchanged status, so no ShowLed (restarting the blink would stutter)
    assert leds(p.feed(RegistrationChanged(2, False))) == {}
    assert leds(p.feed(RegistrationChanged(1, True))) == {}  # account 2 still registering
    assert leds(p.feed(RegistrationChanged(2, True))) == {"status": HEARTBEAT}
    assert p.led() is LedState.IDLE
    assert leds(p.feed(RegistrationChanged(2, False, RegStatus.FAILED))) == {"status": DOUBLE_FLASH}
    assert p.led() is LedState.ERROR
    assert leds(p.feed(RegistrationChanged(2, True))) == {"status": HEARTBEAT}
    assert leds(p.feed(FaultChanged("audio device", True))) == {"status": DOUBLE_FLASH}
    assert leds(p.feed(FaultChanged("audio device", False))) == {"status": HEARTBEAT}


def test_no_registering_accounts_is_idle_at_once() -> None:
    p = Phone()
    assert leds(p.initial)["status"] == HEARTBEAT
    assert p.b.get_timer() is None


def test_led_patterns_are_distinct() -> None:
    patterns = [DOUBLE_FLASH, FAST_BLINK, HEARTBEAT, SLOW_BLINK, STEADY, None]
    assert len(set(patterns)) == len(patterns)


# -- the bell: sequential -------------------------------------------------------------


def test_bell_calls_targets_sequentially_with_timeout() -> None:
    p = Phone()
    out = p.press("bell")
    (make,) = of(out, MakeCall)
    assert (make.acc, make.target) == (ACC, FLAT_A)
    assert PlayTone(ToneKind.RINGBACK) in out
    assert leds(out) == {"ring": SLOW_BLINK}
    assert p.st() is PhoneState.DIALING
    assert p.b.get_timer() == 1020.0
    p.feed(CallPlaced(make.ref, 10))
    p.state(10, CallPhase.EARLY)
    out = p.advance(20.0)
    assert p.now == 1020.0
    assert Hangup(10) in out
    (make2,) = of(out, MakeCall)
    assert make2.target == FLAT_B and make2.ref != make.ref
    assert p.b.get_timer() == 1040.0
    p.feed(CallPlaced(make2.ref, 11))
    p.now += 5
    out = p.state(11, CallPhase.CONFIRMED)
    assert p.st() is PhoneState.IN_CALL and p.b.active_call == 11
    assert StopTone() in out
    assert leds(out) == {"status": STEADY, "ring": None, "call": STEADY}
    assert p.b.get_timer() is None
    # the cancelled first call's late events change nothing
    assert without_logs(p.state(10, CallPhase.DISCONNECTED, 487)) == []
    assert p.st() is PhoneState.IN_CALL


def test_busy_target_moves_on_and_nobody_answering_plays_busy() -> None:
    p = Phone()
    (make,) = of(p.press("bell"), MakeCall)
    p.feed(CallPlaced(make.ref, 10))
    out = p.state(10, CallPhase.DISCONNECTED, 486)
    (make2,) = of(out, MakeCall)
    assert make2.target == FLAT_B
    assert p.b.get_timer() == 1020.0  # a fresh timeout for the new target
    out = p.feed(CallPlaced(make2.ref, None, "no route"))
    assert p.st() is PhoneState.IDLE
    assert of(out, PlayTone) == [PlayTone(ToneKind.BUSY)]
    assert StopTone() in out
    assert p.b.get_timer() is None


def test_sequential_timeout_on_last_target_gives_up() -> None:
    p = Phone(replace(INTERCOM, ring_timeout=10.0))
    (make,) = of(p.press("bell"), MakeCall)
    p.feed(CallPlaced(make.ref, 10))
    out = p.advance(10.0)
    (make2,) = of(out, MakeCall)
    p.feed(CallPlaced(make2.ref, 11))
    out = p.advance(9.9)
    assert out == []
    out = p.advance(0.1)
    assert Hangup(11) in out and PlayTone(ToneKind.BUSY) in out
    assert p.st() is PhoneState.IDLE


def test_bell_pressed_again_while_calling_is_ignored() -> None:
    p = Phone()
    p.press("bell")
    assert of(p.press("bell"), MakeCall) == []
    assert p.st() is PhoneState.DIALING


# -- the bell: parallel ----------------------------------------------------------------


def test_parallel_first_answer_wins() -> None:
    p = Phone(replace(INTERCOM, ring_mode="parallel"))
    out = p.press("bell")
    makes = of(out, MakeCall)
    assert [m.target for m in makes] == [FLAT_A, FLAT_B]
    assert p.b.get_timer() == 1020.0
    p.feed(CallPlaced(makes[0].ref, 10))
    p.feed(CallPlaced(makes[1].ref, 11))
    out = p.state(11, CallPhase.CONFIRMED)
    assert of(out, Hangup) == [Hangup(10)]
    assert p.b.active_call == 11 and p.st() is PhoneState.IN_CALL
    assert p.b.get_timer() is None


def test_parallel_one_failure_keeps_the_others_ringing() -> None:
    p = Phone(replace(INTERCOM, ring_mode="parallel"))
    makes = of(p.press("bell"), MakeCall)
    p.feed(CallPlaced(makes[0].ref, 10))
    p.feed(CallPlaced(makes[1].ref, 11))
    assert without_logs(p.state(10, CallPhase.DISCONNECTED, 486)) == []
    assert p.st() is PhoneState.DIALING
    out = p.advance(20.0)
    assert of(out, Hangup) == [Hangup(11)]
    assert PlayTone(ToneKind.BUSY) in out and p.st() is PhoneState.IDLE


def test_parallel_timeout_cancels_all_even_unplaced() -> None:
    p = Phone(replace(INTERCOM, ring_mode="parallel"))
    makes = of(p.press("bell"), MakeCall)
    p.feed(CallPlaced(makes[0].ref, 10))
    out = p.advance(20.0)
    assert of(out, Hangup) == [Hangup(10)]
    # the application reports the second placement late: we hang it up
    assert p.feed(CallPlaced(makes[1].ref, 11)) == [Hangup(11)]


# -- bell during a call --------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["hangup", "ignore"])
def test_bell_during_call(mode: str) -> None:
    p = Phone(replace(INTERCOM, bell_during_call=mode))
    p.dial_answered(10)
    out = p.press("bell")
    if mode == "hangup":
        assert of(out, Hangup) == [Hangup(10)]
        assert p.st() is PhoneState.IDLE
    else:
        assert of(out, Hangup) == [] and of(out, MakeCall) == []
        assert p.st() is PhoneState.IN_CALL


# -- incoming calls at the intercom -------------------------------------------------------


def test_trusted_caller_is_auto_answered() -> None:
    p = Phone()
    out = p.feed(IncomingCall(20, '"Flat A" <sip:flat-a@PBX.example.com>;tag=x'))
    assert of(out, Answer) == [Answer(20)]
    assert p.st() is PhoneState.IN_CALL


def test_untrusted_caller_declined_without_answer_button() -> None:
    p = Phone()
    out = p.feed(IncomingCall(20, "sip:scanner@203.0.113.9"))
    assert of(out, Hangup) == [Hangup(20, 603)]
    assert p.st() is PhoneState.IDLE


def test_untrusted_caller_rings_when_someone_can_answer() -> None:
    p = Phone(buttons=(BELL, ANSWER))
    out = p.feed(IncomingCall(20, "sip:visitor@elsewhere.example"))
    assert PlayTone(ToneKind.RING) in out and of(out, Answer) == []
    assert p.st() is PhoneState.RINGING


def test_auto_answer_off_rings() -> None:
    p = Phone(replace(INTERCOM, auto_answer=False), buttons=(ANSWER,))
    p.feed(IncomingCall(20, FLAT_A))
    assert p.st() is PhoneState.RINGING


def test_busy_intercom_refuses_second_call() -> None:
    p = Phone()
    p.dial_answered(10)
    out = p.feed(IncomingCall(21, FLAT_B))
    assert of(out, Hangup) == [Hangup(21, 486)]
    assert p.st() is PhoneState.IN_CALL
    p.press("bell")  # ignore mode
    out = p.feed(IncomingCall(22, FLAT_B))
    assert of(out, Hangup) == [Hangup(22, 486)]


def test_call_while_dialing_is_busy() -> None:
    p = Phone()
    p.press("bell")
    assert of(p.feed(IncomingCall(21, FLAT_B)), Hangup) == [Hangup(21, 486)]


# -- DTMF door code -------------------------------------------------------------------------


def test_door_code_from_allowed_caller_pulses_relay() -> None:
    p = Phone()
    p.dial_answered(10)  # FLAT_A answered the bell
    out = p.dtmf(10, "4711")
    assert of(out, PulseRelay) == [PulseRelay(3.0)]
    assert PlayTone(ToneKind.DOOR_OPENED) in out
    assert all("4711" not in log.msg for log in of(out, Log))
    assert p.st() is PhoneState.IN_CALL  # hangup_after_door is off


def test_door_code_then_hangup_after_door() -> None:
    p = Phone(replace(INTERCOM, hangup_after_door=True))
    p.dial_answered(10)
    p.dtmf(10, "4711")
    assert p.b.get_timer() == p.now + 1.0
    out = p.advance(1.0)
    assert of(out, Hangup) == [Hangup(10)]
    assert p.st() is PhoneState.IDLE


def test_door_code_from_caller_not_allowed_is_ignored() -> None:
    p = Phone()
    p.feed(IncomingCall(20, FLAT_B))  # trusted (auto-answered), not in door_code_from
    p.state(20, CallPhase.CONFIRMED)
    out = p.dtmf(20, "4711")
    assert of(out, PulseRelay) == []
    assert len(of(out, Log)) == 1  # said once, not per digit


def test_door_code_falls_back_to_trusted() -> None:
    p = Phone(replace(INTERCOM, door_code_from=()))
    p.feed(IncomingCall(20, FLAT_B))
    p.state(20, CallPhase.CONFIRMED)
    assert of(p.dtmf(20, "4711"), PulseRelay) == [PulseRelay(3.0)]


def test_dtmf_before_the_call_is_confirmed_is_ignored() -> None:
    p = Phone()
    p.feed(IncomingCall(20, FLAT_A))
    assert of(p.dtmf(20, "4711"), PulseRelay) == []


def test_wrong_codes_end_the_call() -> None:
    p = Phone()
    p.dial_answered(10)
    out = p.dtmf(10, "1234")
    assert of(out, PlayTone) == [PlayTone(ToneKind.WRONG_CODE)]
    assert all("1234" not in log.msg for log in of(out, Log))
    p.dtmf(10, "0000")
    out = p.dtmf(10, "9999")
    assert of(out, Hangup) == [Hangup(10)]
    assert of(out, PulseRelay) == []
    assert p.st() is PhoneState.IDLE


def test_partial_code_is_forgotten_after_a_pause() -> None:
    p = Phone()
    p.dial_answered(10)
    p.dtmf(10, "47")
    assert p.b.get_timer() == p.now + 5.0
    p.advance(6.0)
    out = p.dtmf(10, "11")
    assert of(out, PulseRelay) == [] and of(out, PlayTone) == []  # "11" is a new start
    out = p.dtmf(10, "47")
    assert of(out, PlayTone) == [PlayTone(ToneKind.WRONG_CODE)]  # "1147"
    assert of(p.dtmf(10, "4711"), PulseRelay) == [PulseRelay(3.0)]


def test_no_relay_no_door() -> None:
    p = Phone(relay_pulse=None)
    p.dial_answered(10)
    assert of(p.dtmf(10, "4711"), PulseRelay) == []
    assert of(p.press("exit"), PulseRelay) == []


def test_door_button_pulses_in_any_state() -> None:
    p = Phone()
    assert of(p.press("exit"), PulseRelay) == [PulseRelay(3.0)]
    p.dial_answered(10)
    assert of(p.press("exit"), PulseRelay) == [PulseRelay(3.0)]


# -- maximum call duration --------------------------------------------------------------------


def test_max_call_seconds_ends_the_call() -> None:
    p = Phone(replace(INTERCOM, max_call_seconds=120))
    p.now = 2000.0
    p.dial_answered(10)
    assert p.b.get_timer() == 2120.0
    assert p.advance(119.0) == []
    out = p.advance(1.0)
    assert of(out, Hangup) == [Hangup(10)]
    assert p.st() is PhoneState.IDLE and p.b.get_timer() is None


def test_max_call_timer_stops_when_the_call_ends() -> None:
    p = Phone(replace(INTERCOM, max_call_seconds=120))
    p.dial_answered(10)
    p.state(10, CallPhase.DISCONNECTED, 200)
    assert p.b.get_timer() is None and p.st() is PhoneState.IDLE


# -- requests from the command line ----------------------------------------------------------


def test_dial_request_is_a_call_like_the_bell() -> None:
    p = Phone(replace(INTERCOM, max_call_seconds=60))
    out = p.feed(DialRequested("sip:guest@pbx.example.com"))
    assert of(out, MakeCall) == [MakeCall(ACC, "sip:guest@pbx.example.com", 1)]
    assert p.st() is PhoneState.DIALING
    assert PlayTone(ToneKind.RINGBACK) in out and leds(out)["ring"] == SLOW_BLINK
    assert p.b.get_timer() == p.now + INTERCOM.ring_timeout  # unanswered: given up like the bell
    p.feed(CallPlaced(1, 42))
    out = p.state(42, CallPhase.CONFIRMED)
    assert p.st() is PhoneState.IN_CALL and leds(out)["call"] == STEADY
    out = p.advance(60.0)  # max_call_seconds applies
    assert of(out, Hangup) == [Hangup(42)] and p.st() is PhoneState.IDLE


def test_dial_request_from_another_account_and_refused_when_busy() -> None:
    p = Phone()
    (make,) = of(p.feed(DialRequested("sip:a@x.example.com", acc=5)), MakeCall)
    assert make.acc == 5
    out = p.feed(DialRequested("sip:b@x.example.com"))
    assert of(out, MakeCall) == [] and p.st() is PhoneState.DIALING
    assert any("refused while dialing" in c.msg for c in of(out, Log))


def test_hangup_request_cancels_dialing_ends_calls_rejects_ringing() -> None:
    p = Phone(buttons=(BELL,))  # no hang-up button wired
    (make,) = of(p.press("bell"), MakeCall)
    p.feed(CallPlaced(make.ref, 10))
    assert of(p.feed(HangupRequested()), Hangup) == [Hangup(10)]
    assert p.st() is PhoneState.IDLE
    p.dial_answered(11)
    assert of(p.feed(HangupRequested()), Hangup) == [Hangup(11)]
    assert p.st() is PhoneState.IDLE
    d = Phone(DESK, buttons=(ANSWER,))
    d.feed(IncomingCall(12, "sip:x@y.example.com"))
    assert of(d.feed(HangupRequested()), Hangup) == [Hangup(12)]
    assert d.st() is PhoneState.IDLE


def test_reconfigure_keeps_the_call_and_applies_new_rules() -> None:
    p = Phone(replace(INTERCOM, max_call_seconds=100))
    p.dial_answered(10)
    deadline = p.b.get_timer()
    other = LedSettings("status", 22, "ringing", "t line 6")  # it now shows ringing
    p.b.reconfigure(
        Config(
            intercom=replace(INTERCOM, door_code="9999"),
            buttons=(BELL,),
            leds=(other,),
            relay=RelaySettings(26, "t line 9", pulse_seconds=4.0),
        ),
        call_account=7,
        accounts=(7,),
    )
    out = p.b.drain_commands()
    assert leds(out) == {"status": None}  # re-shown (off: nothing rings): its meaning changed
    assert p.st() is PhoneState.IN_CALL and p.b.get_timer() == deadline  # the call goes on
    assert of(p.dtmf(10, "4711"), PulseRelay) == []  # the old code no longer opens
    assert of(p.dtmf(10, "9999"), PulseRelay) == [PulseRelay(4.0)]  # the new one does
    assert p.led() is LedState.IN_CALL
    p.state(10, CallPhase.DISCONNECTED)
    assert p.led() is LedState.NOT_REGISTERED  # account 7 is new: not registered yet
    assert of(p.press("bell"), MakeCall)[0].acc == 7


# -- desk phone ---------------------------------------------------------------------------------

DESK = IntercomSettings(profile="desk")


def desk() -> Phone:
    return Phone(DESK, buttons=(ANSWER, HANGUP, SPEED))


def test_desk_incoming_rings_and_answer_button_answers() -> None:
    p = desk()
    out = p.feed(IncomingCall(30, FLAT_A))
    assert PlayTone(ToneKind.RING) in out
    assert leds(out) == {"status": FAST_BLINK, "ring": FAST_BLINK}
    assert p.b.ringing_call == 30
    out = p.press("answer")
    assert of(out, Answer) == [Answer(30)]
    assert StopTone() in out
    assert leds(out) == {"status": STEADY, "ring": None, "call": STEADY}
    p.state(30, CallPhase.CONFIRMED)
    out = p.press("hangup")
    assert of(out, Hangup) == [Hangup(30)]
    assert p.st() is PhoneState.IDLE
    assert leds(out) == {"status": HEARTBEAT, "call": None}


def test_desk_reject_and_caller_cancel() -> None:
    p = desk()
    p.feed(IncomingCall(30, FLAT_A))
    out = p.press("hangup")
    assert of(out, Hangup) == [Hangup(30)] and StopTone() in out
    assert p.st() is PhoneState.IDLE
    p.feed(IncomingCall(31, FLAT_A))
    out = p.state(31, CallPhase.DISCONNECTED, 487)
    assert StopTone() in out and p.st() is PhoneState.IDLE
    assert of(p.press("answer"), Answer) == []


def test_desk_call_waiting() -> None:
    p = desk()
    p.feed(IncomingCall(30, FLAT_A))
    p.press("answer")
    p.state(30, CallPhase.CONFIRMED)
    out = p.feed(IncomingCall(31, FLAT_B))
    assert p.st() is PhoneState.CALL_WAITING
    assert PlayTone(ToneKind.CALL_WAITING) in out
    assert leds(out) == {"status": FAST_BLINK, "ring": FAST_BLINK}
    # a third caller gets busy
    assert of(p.feed(IncomingCall(32, FLAT_B)), Hangup) == [Hangup(32, 486)]
    # the waiting caller gives up: back to the call
    out = p.state(31, CallPhase.DISCONNECTED, 487)
    assert p.st() is PhoneState.IN_CALL and StopTone() in out
    # another waiting call, answered: the current one is hung up
    p.feed(IncomingCall(33, FLAT_B))
    out = p.press("answer")
    assert without_logs(out)[:2] == [Hangup(30), Answer(33)]
    assert p.b.active_call == 33 and p.st() is PhoneState.IN_CALL


def test_desk_hangup_during_call_waiting_rings_the_waiting_call() -> None:
    p = desk()
    p.feed(IncomingCall(30, FLAT_A))
    p.press("answer")
    p.feed(IncomingCall(31, FLAT_B))
    out = p.press("hangup")
    assert of(out, Hangup) == [Hangup(30)]
    assert PlayTone(ToneKind.RING) in out
    assert p.st() is PhoneState.RINGING and p.b.ringing_call == 31


def test_desk_remote_ends_call_with_waiting_call() -> None:
    p = desk()
    p.feed(IncomingCall(30, FLAT_A))
    p.press("answer")
    p.feed(IncomingCall(31, FLAT_B))
    p.state(30, CallPhase.DISCONNECTED, 200)
    assert p.st() is PhoneState.RINGING
    assert of(p.press("answer"), Answer) == [Answer(31)]


def test_speed_dial_and_cancel() -> None:
    p = desk()
    out = p.press("speed")
    (make,) = of(out, MakeCall)
    assert make.target == FLAT_B
    assert p.b.get_timer() is None  # no timeout of ours: the callee's side decides
    p.feed(CallPlaced(make.ref, 40))
    out = p.press("hangup")
    assert of(out, Hangup) == [Hangup(40)] and p.st() is PhoneState.IDLE


def test_long_press_of_hangup_ends_everything() -> None:
    p = desk()
    p.feed(IncomingCall(30, FLAT_A))
    p.press("answer")
    p.feed(IncomingCall(31, FLAT_B))
    out = p.feed(ButtonLongPressed("hangup", p.now))
    assert of(out, Hangup) == [Hangup(31), Hangup(30)]
    assert p.st() is PhoneState.IDLE
    assert p.feed(ButtonReleased("hangup", p.now, 2.0, True)) == []


def test_unknown_button_and_unknown_call_are_ignored() -> None:
    p = desk()
    out = p.press("nonexistent")
    assert without_logs(out) == [] and of(out, Log)[0].level == "warning"
    assert p.state(99, CallPhase.CONFIRMED) == []
    assert p.feed(DtmfReceived(99, "1")) == []


# -- from the config file --------------------------------------------------------------------


def test_from_example_config() -> None:
    root = Path(__file__).resolve().parents[2]
    config = load_config(root / "deploy" / "intercom.example.toml")
    b = Behaviour.from_config(config, now=0.0, call_account=0, accounts=(0,))
    b.drain_commands()
    b.handle_event(ButtonPressed("bell", 0.0), 0.0)
    makes = of(b.drain_commands(), MakeCall)
    assert [m.target for m in makes] == [config.buttons[0].targets[0]]
    assert b.get_timer() == config.intercom.ring_timeout


# -- caller patterns -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("uri", "patterns", "expected"),
    [
        ("sip:flat@pbx.example.com", ["sip:flat@pbx.example.com"], True),
        ('"Flat" <sip:flat@PBX.Example.com;transport=tcp>', ["sip:flat@pbx.example.com"], True),
        ("sip:Flat@pbx.example.com", ["sip:flat@pbx.example.com"], False),  # user is exact
        ("sip:any@pbx.example.com", ["sip:*@pbx.example.com"], True),
        ("sip:any@evil.example.com", ["sip:*@pbx.example.com"], False),
        ("sip:any@pbx.example.com.evil.net", ["sip:*@pbx.example.com"], False),
        ("sips:flat@pbx.example.com", ["sip:flat@pbx.example.com"], False),
        ("sip:flat@[::1]:5060", ["sip:flat@[::1]:5060"], True),
        ("sip:flat@pbx.example.com", [], False),
    ],
)
def test_caller_matches(uri: str, patterns: list[str], expected: bool) -> None:
    assert caller_matches(uri, patterns) is expected


def test_example_config_screens_requests_as_its_comments_say() -> None:
    """``[sip] allow`` / ``refuse`` in the example: the listed phone gets in on any
    port, a stranger is answered 403 (not dropped)."""
    from firmware.reconfig import screening_for
    from firmware.screening import RequestScreen
    from sipstack.transport_base import Peer

    root = Path(__file__).resolve().parents[2]
    config = load_config(root / "deploy" / "intercom.example.toml")
    assert config.sip.allow == ("192.168.1.20",) and config.sip.refuse == "403"
    screen = RequestScreen(screening_for(config), clock=lambda: 0.0)
    assert screen.trusted(Peer("udp", "192.168.1.20", 5062))
    assert screen.trusted(Peer("tcp", "192.168.1.20", 40000))
    assert not screen.trusted(Peer("udp", "192.168.1.21", 5060))


# -- the split modules ----------------------------------------------------------------------


def test_behaviour_reexports_the_names_of_its_parts() -> None:
    """Other modules import everything from firmware.behaviour: the split must not
    lose a name nor make a second copy of a class."""
    import firmware.behaviour as behaviour
    from firmware import behaviour_events, callers, leds

    before_split = {
        *("PhoneState", "CallPhase", "RegStatus", "LedState", "ToneKind", "LED_PATTERNS"),
        *("RegistrationChanged", "IncomingCall", "CallPlaced", "CallStateChanged"),
        *("DtmfReceived", "FaultChanged", "DialRequested", "HangupRequested"),
        *("BehaviourEvent", "MakeCall", "Answer", "Hangup", "PulseRelay", "ShowLed"),
        *("PlayTone", "StopTone", "Log", "Command", "BehaviourError", "Behaviour"),
        "caller_matches",
    }
    assert set(behaviour.__all__) == before_split
    for module in (behaviour_events, callers, leds):
        for name in set(module.__all__) & before_split:
            assert getattr(behaviour, name) is getattr(module, name), name


def test_dialer_sequential_moves_on_and_gives_up() -> None:
    from collections import deque

    from firmware.dialing import Dialer, DialStep

    out: deque[Command] = deque()
    d = Dialer(out)
    d.start([FLAT_A, FLAT_B], parallel=False, timeout=20.0, acc=2)
    assert list(out) == [MakeCall(2, FLAT_A, 1)] and d.ring_timeout == 20.0
    out.clear()
    assert d.placed(1, 10, "") is DialStep.WAITING
    first = d.find(10)
    assert first is not None and d.owns(first)
    assert d.failed(first, "486") is DialStep.PLACED
    assert without_logs(list(out)) == [MakeCall(2, FLAT_B, 2)]
    assert d.find(10) is None and not d.owns(first)
    out.clear()
    d.placed(2, 11, "")
    assert d.timed_out() is DialStep.EXHAUSTED
    assert without_logs(list(out)) == [Hangup(11)]
    with pytest.raises(ValueError):
        d.start([], parallel=False, timeout=None, acc=2)


def test_dialer_parallel_first_answer_cancels_the_rest_and_late_placements() -> None:
    from collections import deque

    from firmware.dialing import Dialer, DialStep

    out: deque[Command] = deque()
    d = Dialer(out)
    d.start([FLAT_A, FLAT_B, "sip:c@pbx.example.com"], parallel=True, timeout=None, acc=0)
    assert [c.ref for c in of(list(out), MakeCall)] == [1, 2, 3]
    out.clear()
    d.placed(1, 10, "")
    d.placed(2, 11, "")
    winner = d.find(11)
    assert winner is not None
    d.answered(winner)
    assert list(out) == [Hangup(10)]  # ref 3 was never placed: nothing to hang up yet
    assert not d.owns(winner) and d.find(11) is None
    out.clear()
    assert d.placed(3, 12, "") is DialStep.WAITING
    assert list(out) == [Hangup(12)]  # given up before the user agent placed it


def test_door_code_entry() -> None:
    from firmware.door_code import CodeVerdict, DoorCodeEntry

    e = DoorCodeEntry(max_wrong=2)
    assert [e.enter(d, "471") for d in "47"] == [CodeVerdict.INCOMPLETE] * 2
    e.forget_partial()
    assert [e.enter(d, "471") for d in "471"][-1] is CodeVerdict.RIGHT
    assert [e.enter(d, "471") for d in "470"][-1] is CodeVerdict.WRONG
    assert e.wrong_codes == 1 and not e.locked_out
    assert e.enter("9", "9") is CodeVerdict.RIGHT  # a reloaded code applies at once
    e.reset()
    assert e.wrong_codes == 0
    assert [e.enter(d, "12") for d in "1313"] == [
        CodeVerdict.INCOMPLETE,
        CodeVerdict.WRONG,
        CodeVerdict.INCOMPLETE,
        CodeVerdict.WRONG,
    ]
    assert e.locked_out


def test_led_panel_sends_only_changes_and_keeps_leds_across_reconfigure() -> None:
    from firmware.leds import LedPanel

    panel = LedPanel(LEDS[:2])
    assert panel.update(PhoneState.IDLE, LedState.IDLE) == [
        ShowLed("status", HEARTBEAT),
        ShowLed("ring", None),
    ]
    assert panel.update(PhoneState.IDLE, LedState.IDLE) == []
    panel.reconfigure((LedSettings("ring", 23, "call", "t"), LedSettings("x", 25, "status", "t")))
    assert panel.update(PhoneState.IDLE, LedState.IDLE) == [ShowLed("x", HEARTBEAT)]
    assert panel.update(PhoneState.DIALING, LedState.IDLE) == []  # a "call" LED is off
    assert panel.update(PhoneState.IN_CALL, LedState.IN_CALL) == [
        ShowLed("ring", STEADY),
        ShowLed("x", STEADY),
    ]


@pytest.mark.parametrize(
    ("phone", "regs", "faulty", "expected"),
    [
        (PhoneState.RINGING, [RegStatus.FAILED], True, LedState.RINGING),
        (PhoneState.CALL_WAITING, [], False, LedState.RINGING),
        (PhoneState.IN_CALL, [RegStatus.FAILED], True, LedState.IN_CALL),
        (PhoneState.DIALING, [RegStatus.REGISTERED], True, LedState.ERROR),
        (PhoneState.IDLE, [RegStatus.REGISTERING, RegStatus.FAILED], False, LedState.ERROR),
        (
            PhoneState.IDLE,
            [RegStatus.NOT_REGISTERED, RegStatus.REGISTERING],
            False,
            LedState.REGISTERING,
        ),
        (PhoneState.IDLE, [RegStatus.NOT_REGISTERED], False, LedState.NOT_REGISTERED),
        (PhoneState.IDLE, [], False, LedState.IDLE),
    ],
)
def test_status_led_priorities(
    phone: PhoneState, regs: list[RegStatus], faulty: bool, expected: LedState
) -> None:
    from firmware.leds import status_led_state

    assert status_led_state(phone, regs, faulty) is expected
