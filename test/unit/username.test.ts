/**
 * Hostile LAN, part 4: the one username rule (src/domain/Presence.ts), applied to the NFC
 * form. Invisible, format, control, unassigned and private-use characters are refused with
 * their U+ code, so `bob\u200b` can never pass for `bob`; the registry key is the NFC form
 * lower-cased.
 */
import { Result, Schema } from "effect"
import { describe, expect, it } from "vitest"
import { decodeFrame, HandshakePayload } from "../../src/domain/Frames.ts"
import { decodePresence, encodeAnnouncement, Username, usernameKey, usernameProblem } from "../../src/domain/Presence.ts"

const decodeUsername = Schema.decodeUnknownResult(Username)
const COMPOSED = "\u00e9" // é
const DECOMPOSED = "e\u0301" // e + combining acute

/** [class, name, the U+ code the refusal must name] */
const REFUSED: ReadonlyArray<readonly [string, string, string]> = [
  ["control (C0)", "a\u0000b", "U+0000"],
  ["control (ESC)", "a\u001b[2J", "U+001B"],
  ["control (C1)", "a\u0085", "U+0085"],
  ["format: zero width space", "bob\u200b", "U+200B"],
  ["format: zero width joiner", "b\u200dob", "U+200D"],
  ["format: left-to-right mark", "\u200ebob", "U+200E"],
  ["format: right-to-left mark", "bob\u200f", "U+200F"],
  ["format: right-to-left override", "mal\u202eyrol", "U+202E"],
  ["format: right-to-left isolate", "a\u2067b", "U+2067"],
  ["format: arabic letter mark", "a\u061cb", "U+061C"],
  ["format: byte order mark", "bo\ufeffb", "U+FEFF"],
  ["format: soft hyphen", "bo\u00adb", "U+00AD"],
  ["unassigned", "a\u0378", "U+0378"],
  ["unassigned (plane 4)", "a\u{40000}", "U+40000"],
  ["private use", "a\ue000", "U+E000"],
  ["private use (plane 15)", "a\u{f0000}", "U+F0000"],
  ["line separator", "a\u2028b", "U+2028"],
  ["paragraph separator", "a\u2029b", "U+2029"],
  ["hangul choseong filler", "\u115fbob", "U+115F"],
  ["hangul jungseong filler", "bob\u1160", "U+1160"],
  ["hangul filler", "bo\u3164b", "U+3164"],
  ["halfwidth hangul filler", "bob\uffa0", "U+FFA0"],
  ["braille blank", "bob\u2800", "U+2800"],
  ["variation selector 1", "bob\ufe00", "U+FE00"],
  ["variation selector 16", "bob\ufe0f", "U+FE0F"],
  ["variation selector 17", "bob\u{e0100}", "U+E0100"],
  ["variation selector 256", "bob\u{e01ef}", "U+E01EF"],
  ["tag", "bob\u{e0001}", "U+E0001"],
  ["tag space", "bob\u{e0020}", "U+E0020"],
  ["cancel tag", "bob\u{e007f}", "U+E007F"],
  ["lone surrogate", "bob\ud800", "U+D800"]
]

describe("usernameProblem refuses", () => {
  for (const [what, name, code] of REFUSED) {
    it(`${what}: ${code}`, () => {
      expect(usernameProblem(name)).toContain(code)
      const r = decodeUsername(name)
      expect(Result.isFailure(r), "the Username schema refuses it too").toBe(true)
      if (Result.isFailure(r)) expect(r.failure.message).toContain(code)
    })
  }

  it("leading or trailing spaces, and the empty name", () => {
    for (const name of [" bob", "bob ", "\u00a0bob", "bob\u3000"]) expect(usernameProblem(name)).toMatch(/start or end with spaces/)
    expect(usernameProblem("")).toMatch(/at least 1 character/)
  })

  it("more than 32 code points, counted after NFC", () => {
    expect(usernameProblem("x".repeat(32))).toBeUndefined()
    expect(usernameProblem("x".repeat(33))).toMatch(/at most 32 characters/)
    expect(usernameProblem("🎉".repeat(32))).toBeUndefined() // 64 UTF-16 units, 32 code points
    expect(usernameProblem("🎉".repeat(33))).toMatch(/at most 32/)
    // 32 decomposed é are 64 code points, but 32 after NFC
    expect(usernameProblem(DECOMPOSED.repeat(32))).toBeUndefined()
    expect(usernameProblem(DECOMPOSED.repeat(33))).toMatch(/at most 32/)
  })
})

describe("usernameProblem accepts", () => {
  it("ordinary names, accents, emoji, CJK, inner spaces", () => {
    for (const name of ["bob", "Zoë", "🎉", "pizza 🍕 fan", "語", "山田太郎", "Ωmega", "ж", "a b", "o'neil"]) {
      expect(usernameProblem(name), name).toBeUndefined()
      expect(Result.isSuccess(decodeUsername(name)), name).toBe(true)
    }
  })
})

describe("NFC", () => {
  it("a decomposed é is decoded as the composed one", () => {
    const r = decodeUsername(`Jos${DECOMPOSED}`)
    expect(r).toEqual(Result.succeed(`Jos${COMPOSED}`))
  })

  it("the key is the NFC form lower-cased: both spellings name one user", () => {
    expect(usernameKey(`JOS${"E\u0301"}`)).toBe(`jos${COMPOSED}`)
    expect(usernameKey(`Jos${DECOMPOSED}`)).toBe(usernameKey(`jos${COMPOSED}`))
  })

  it("an announcement stores the composed name; a node announces the composed name", () => {
    const r = decodePresence(new TextEncoder().encode(JSON.stringify({ username: `Jos${DECOMPOSED}` })))
    expect(Result.isSuccess(r) && r.success.value).toEqual({ username: `Jos${COMPOSED}` })
    const sent = JSON.parse(encodeAnnouncement({ username: `Jos${DECOMPOSED}`, tcpPort: 6001, away: false, id: "A".repeat(43), ts: 1 }, () => ""))
    expect(sent.username).toBe(`Jos${COMPOSED}`)
  })
})

describe("every edge uses the rule", () => {
  it("presence: an announcement or a bye named bob\\u200b is refused, naming U+200B", () => {
    for (const datagram of [{ username: "bob\u200b" }, { bye: "bob\u200b" }]) {
      const r = decodePresence(new TextEncoder().encode(JSON.stringify(datagram)))
      expect(Result.isFailure(r)).toBe(true)
      if (Result.isFailure(r)) expect(r.failure).toContain("U+200B")
    }
  })

  it("the handshake payload refuses bob\\u200b and normalises to NFC", () => {
    const decode = Schema.decodeUnknownResult(Schema.fromJsonString(HandshakePayload))
    const bad = decode(JSON.stringify({ username: "bob\u200b" }))
    expect(Result.isFailure(bad) && bad.failure.message).toContain("U+200B")
    expect(decode(JSON.stringify({ username: `Jos${DECOMPOSED}` }))).toEqual(Result.succeed({ username: `Jos${COMPOSED}` }))
  })

  it("a plain frame's from: bob\\u200b is refused", () => {
    const frame = { unencrypted_message: "aGk=", id: "m1", from: "bob\u200b" }
    const r = decodeFrame(JSON.stringify(frame))
    expect(Result.isFailure(r) && r.failure).toContain("U+200B")
  })
})
