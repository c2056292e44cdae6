// ceiling (JavaScript): pauses mining while a signal is above a ceiling.
// The JavaScript twin of the Rust template policy (`hashwatt plugin new
// --kind policy`): same settings, same decisions, same reasons.

let settings = null;

// Like Rust's `{}` for f64: 150 -> "150", 150.5 -> "150.5".
const num = (v) => String(v);

export const policy = {
  configure(configJson) {
    let c;
    try {
      c = JSON.parse(configJson);
    } catch (e) {
      throw `settings are not JSON: ${e}`;
    }
    if (c === null || typeof c !== "object" || Array.isArray(c)) throw "settings must be a table";
    const unknown = Object.keys(c).filter((k) => !["signal", "max", "on_unknown"].includes(k)).sort();
    if (unknown.length) throw `unknown field \`${unknown[0]}\`, expected one of \`signal\`, \`max\`, \`on_unknown\``;
    if (typeof c.signal !== "string") throw "missing field `signal`";
    if (typeof c.max !== "number") throw "missing field `max`";
    const onUnknown = c.on_unknown ?? "pause";
    if (onUnknown !== "pause" && onUnknown !== "run") throw `on_unknown: unknown variant \`${onUnknown}\`, expected \`pause\` or \`run\``;
    settings = { signal: c.signal, max: c.max, onUnknown };
  },

  subscriptions() {
    return settings ? [settings.signal] : [];
  },

  evaluate(inputs) {
    const decide = (mode, reason) => ({ mode, reason, nextEvalMs: 60000, state: undefined });
    if (!settings) return decide({ tag: "pause" }, "not configured");
    const s = inputs.signals.find((x) => x.name === settings.signal);
    if (s && s.value.tag === "number" && !Number.isNaN(s.value.val)) {
      const v = s.value.val;
      if (v > settings.max) return decide({ tag: "pause" }, `${settings.signal} ${num(v)} > ${num(settings.max)}`);
      return decide({ tag: "run" }, `${settings.signal} ${num(v)} <= ${num(settings.max)}`);
    }
    const mode = settings.onUnknown === "pause" ? { tag: "pause" } : { tag: "run" };
    return decide(mode, `signal ${settings.signal} unknown; on_unknown = ${settings.onUnknown}`);
  },
};
