/**
 * Hostile LAN, part 8: what a peer chose (its name, its text, an error quoting either)
 * never reaches a terminal raw. `clean` (src/ui/render.ts) is the one sanitiser every
 * printer applies: C0/C1 controls, DEL, bidi controls and U+2028/9 become visible `\uXXXX`
 * escapes (a tab a space). `toJson` is the one JSON writer of every `--json` print: it
 * escapes DEL, C1, U+2028/9 (and the bidi controls) as well, and parses back unchanged.
 */
import { describe, expect, it } from "vitest"
import { unknownUser } from "../../src/chat/text.ts"
import type { HistoryEntry } from "../../src/services/History.ts"
import { clean, historyLine, jsonLine, peerLine, render, textLine, toJson } from "../../src/ui/render.ts"

const ESC_CLEAR = "\u001b[2J"
/**
 * A name with a right-to-left override. Username refuses it at every edge (hostile LAN,
 * part 4); the renderers must still escape it, as a second line of defence.
 */
const NAME = "mal\u202eyrol"
/** A peer's text: every kind of hostile character. */
const TEXT = `hi${ESC_CLEAR}\u0085next\u2028line\u202egnp.exe\u007f\u009b31m\u2066x\u2069\u200e\u200f\u061c\u0000\r\n.`

/** Every character that must never be printed raw. */
const RAW = /[\u0000-\u0008\u000a-\u001f\u007f-\u009f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069]/u

const expectEscaped = (line: string) => {
  expect(line).not.toMatch(RAW)
  expect(line).not.toContain("\uFFFD")
}

describe("clean: the terminal sanitiser", () => {
  it("shows each unsafe character as its \\u escape, visibly", () => {
    expect(clean(ESC_CLEAR)).toBe("\\u001b[2J")
    expect(clean("a\u0085b\u2028c\u2029d\u202ee\u007ff\u009fg")).toBe("a\\u0085b\\u2028c\\u2029d\\u202ee\\u007ff\\u009fg")
    expect(clean("\u202a\u202b\u202c\u202d\u2066\u2067\u2068\u2069\u200e\u200f\u061c")).toBe(
      "\\u202a\\u202b\\u202c\\u202d\\u2066\\u2067\\u2068\\u2069\\u200e\\u200f\\u061c"
    )
    expect(clean("a\nb\rc\u0000")).toBe("a\\u000ab\\u000dc\\u0000")
    expectEscaped(clean(TEXT))
  })

  it("shows a tab as a space and leaves ordinary text alone (accents, emoji, CJK, backslashes)", () => {
    expect(clean("a\tb")).toBe("a b")
    const ordinary = "Zoë 😀 你好 C:\\temp \u00a0 ok"
    expect(clean(ordinary)).toBe(ordinary)
  })

  it("is idempotent, so a line cleaned twice (by its renderer and by its printer) is unchanged", () => {
    expect(clean(clean(TEXT))).toBe(clean(TEXT))
  })

  it("makes the failed-send line that quotes a hostile name safe", () => {
    const line = clean(`! not delivered: ${unknownUser(`x${ESC_CLEAR}\u202e\u0085\u2028`).message}`)
    expect(line).toBe("! not delivered: no user 'x\\u001b[2J\\u202e\\u0085\\u2028' is online; 'users' lists who is")
    expectEscaped(line)
  })
})

describe("the text renderers show escapes, never the raw characters", () => {
  const at = "2026-12-01T13:24:26.852Z"

  it("message, peer, warning, error and info lines", () => {
    const lines = [
      textLine({ event: "message", id: "1", from: NAME, text: TEXT, mode: "noise", at }),
      textLine({ event: "peer", username: NAME, address: "127.0.0.1", port: 6001, status: "online", proto: "p2pchat/1", fingerprint: null }),
      textLine({ event: "delivered", id: "1", to: NAME }),
      textLine({ event: "warning", message: `key of ${NAME} changed: ${TEXT}` }),
      textLine({ event: "error", message: TEXT }),
      textLine({ event: "info", message: TEXT })
    ]
    for (const line of lines) expectEscaped(line)
    expect(lines[0]).toBe(`[13:24:26] mal\\u202eyrol: ${clean(TEXT)}`)
    expect(lines[0]).toContain("\\u001b[2J\\u0085next\\u2028line\\u202egnp.exe\\u007f\\u009b31m")
    expect(lines[1]).toBe("* mal\\u202eyrol (127.0.0.1) is online")
  })

  it("history and peer lines", () => {
    const sent: HistoryEntry = { id: "1", peer: NAME, direction: "sent", text: TEXT, at, mode: "plain", state: "delivered" }
    expectEscaped(historyLine(sent))
    expectEscaped(historyLine({ ...sent, direction: "received", state: "received" }))
    expect(historyLine(sent)).toContain("me -> mal\\u202eyrol: hi\\u001b[2J\\u0085next\\u2028line")
    const peer = peerLine({
      username: NAME, address: "127.0.0.1", port: 6001, status: "online", lastSeen: at, proto: "p2pchat/1", fingerprint: null, signed: false
    })
    expectEscaped(peer)
    expect(peer.startsWith("mal\\u202eyrol ")).toBe(true)
  })
})

describe("toJson: every --json line", () => {
  const value = { event: "message", id: "1", from: NAME, text: TEXT, mode: "noise", at: "x", nested: [{ [NAME]: TEXT }] }

  it("escapes DEL, C1, U+2028/9 and the bidi controls, and stays one valid JSON line", () => {
    const line = toJson(value)
    expect(line).not.toMatch(RAW)
    for (const escape of ["\\u001b", "\\u0085", "\\u2028", "\\u202e", "\\u007f", "\\u009b", "\\u2066", "\\u061c", "\\u0000", "\\r", "\\n"]) {
      expect(line).toContain(escape)
    }
    expect(line).not.toContain("\n")
    expect(JSON.parse(line)).toEqual(value)
  })

  it("escapes every character from U+007F to U+009F, and U+2028 and U+2029, and parses back", () => {
    const all = [...Array.from({ length: 0x21 }, (_, i) => String.fromCharCode(0x7f + i)), "\u2028", "\u2029"]
    const line = toJson({ all: all.join(""), each: all })
    expect(line).not.toMatch(/[\u007f-\u009f\u2028\u2029]/u)
    for (const c of all) expect(line).toContain(`\\u${c.charCodeAt(0).toString(16).padStart(4, "0")}`)
    expect(JSON.parse(line)).toEqual({ all: all.join(""), each: all })
  })

  it("keeps backslashes and quotes right next to an escaped character", () => {
    const tricky = { s: "\\\u0085\"\u2028\\\\\u202e\\u0085" }
    expect(JSON.parse(toJson(tricky))).toEqual(tricky)
  })

  it("history arrays and event lines (jsonLine, render(true)) go through it", () => {
    const rows: Array<HistoryEntry> = [{ id: "1", peer: NAME, direction: "received", text: TEXT, at: "x", mode: "noise", state: "received" }]
    const history = toJson(rows)
    expect(history).toContain("mal\\u202eyrol")
    expect(history).toContain("\\u0085next\\u2028line")
    expect(JSON.parse(history)).toEqual(rows)
    const event = { event: "message" as const, id: "1", from: NAME, text: TEXT, mode: "noise", at: "x" }
    for (const line of [jsonLine(event), render(true)(event)]) {
      expect(line).not.toMatch(RAW)
      expect(line).toContain("\\u0085next\\u2028line\\u202egnp.exe\\u007f\\u009b31m")
      expect(JSON.parse(line)).toEqual(event)
    }
  })
})
