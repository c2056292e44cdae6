"""ceiling (Python): pauses mining while a signal is above a ceiling.

The Python twin of the Rust template policy (`hashwatt plugin new --kind
policy`): same settings, same decisions, same reasons.
"""
import json

from componentize_py_types import Err
from wit_world import exports
from wit_world.imports import types


def _num(v: float) -> str:
    # Like Rust's `{}` for f64: 150.0 -> "150", 1.5 -> "1.5".
    return str(int(v)) if float(v).is_integer() else repr(v)


class _Settings:
    signal = None
    max = 0.0
    on_unknown = "pause"


# componentize-py makes a new `Policy` object for every call: the settings
# live at module level, for the life of the instance.
_settings = _Settings()


class Policy(exports.Policy):

    def configure(self, config_json: str) -> None:
        try:
            c = json.loads(config_json)
        except ValueError as e:
            raise Err(f"settings are not JSON: {e}")
        if not isinstance(c, dict):
            raise Err("settings must be a table")
        unknown = sorted(set(c) - {"signal", "max", "on_unknown"})
        if unknown:
            raise Err(f"unknown field `{unknown[0]}`, expected one of `signal`, `max`, `on_unknown`")
        if not isinstance(c.get("signal"), str):
            raise Err("missing field `signal`")
        m = c.get("max")
        if isinstance(m, bool) or not isinstance(m, (int, float)):
            raise Err("missing field `max`")
        on_unknown = c.get("on_unknown", "pause")
        if on_unknown not in ("pause", "run"):
            raise Err(f"on_unknown: unknown variant `{on_unknown}`, expected `pause` or `run`")
        _settings.signal, _settings.max, _settings.on_unknown = c["signal"], float(m), on_unknown

    def subscriptions(self) -> list[str]:
        return [_settings.signal] if _settings.signal else []

    def evaluate(self, inputs: types.Inputs) -> types.Decision:
        def decide(mode, reason):
            return types.Decision(mode=mode, reason=reason, next_eval_ms=60_000, state=None)

        if _settings.signal is None:
            return decide(types.Mode_Pause(), "not configured")
        for s in inputs.signals:
            if s.name == _settings.signal and isinstance(s.value, types.SignalValue_Number):
                v = s.value.value
                if v != v:  # NaN
                    break
                if v > _settings.max:
                    return decide(types.Mode_Pause(), f"{_settings.signal} {_num(v)} > {_num(_settings.max)}")
                return decide(types.Mode_Run(), f"{_settings.signal} {_num(v)} <= {_num(_settings.max)}")
        mode = types.Mode_Pause() if _settings.on_unknown == "pause" else types.Mode_Run()
        return decide(mode, f"signal {_settings.signal} unknown; on_unknown = {_settings.on_unknown}")
