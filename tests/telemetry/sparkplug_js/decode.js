// Test-only independent decoder: Eclipse Tahu's JavaScript Sparkplug B codec (npm
// sparkplug-payload) decodes what tend published. Reads mosquitto_sub lines
// "<retained> <qos> <topic> <payload as hex>" on stdin and prints one JSON object per line:
// {retained, qos, topic, payload} where payload is the decoded Sparkplug payload (64-bit values as
// numbers), or {..., text} for the JSON STATE topic, or {..., error} when it does not decode.
"use strict";
const readline = require("readline");
const sparkplug = require("sparkplug-payload").get("spBv1.0");

function plain(v) {
  if (v === null || v === undefined) return v;
  if (typeof v === "object" && typeof v.toNumber === "function") return v.toNumber();
  if (Buffer.isBuffer(v) || v instanceof Uint8Array) return Buffer.from(v).toString("hex");
  if (Array.isArray(v)) return v.map(plain);
  if (typeof v === "object") {
    const out = {};
    for (const k of Object.keys(v)) out[k] = plain(v[k]);
    return out;
  }
  return v;
}

// `node decode.js --encode JSON OUT`: writes the Sparkplug payload JSON describes (a host's NCMD)
// to OUT, encoded by the same independent codec.
if (process.argv[2] === "--encode") {
  require("fs").writeFileSync(process.argv[4], sparkplug.encodePayload(JSON.parse(process.argv[3])));
  process.exit(0);
}

const rl = readline.createInterface({ input: process.stdin });
rl.on("line", (line) => {
  const m = line.match(/^(\d) (\d) (\S+) ?([0-9a-fA-F]*)$/);
  if (!m) return;
  const out = { retained: Number(m[1]), qos: Number(m[2]), topic: m[3] };
  const bytes = Buffer.from(m[4], "hex");
  if (m[3].split("/")[1] === "STATE") {
    out.text = bytes.toString("utf8");
  } else {
    try {
      out.payload = plain(sparkplug.decodePayload(bytes));
    } catch (e) {
      out.error = String(e);
    }
  }
  console.log(JSON.stringify(out));
});
