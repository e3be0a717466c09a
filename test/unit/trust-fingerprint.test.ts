/**
 * `trust USER FINGERPRINT`: typed fingerprints (the 60 digits or at least the first 20,
 * spaces optional), and Trust.trustPeer pinning only a key the peer proved in a handshake
 * (presented in a refused session, or pinned already) whose fingerprint the user gave.
 */
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { assert, describe, it } from "@effect/vitest"
import { Context, Effect, Layer, Option } from "effect"
import { fingerprint, fingerprintMatches, parseFingerprint } from "../../src/domain/Fingerprint.ts"
import { generateKeyPair } from "../../src/domain/Noise.ts"
import * as History from "../../src/services/History.ts"
import * as Store from "../../src/services/Store.ts"
import { checkTrust, Trust, layer as trustLayer, trustChoices } from "../../src/trust/Trust.ts"

const KEY = new Uint8Array(32)
const FP = "76155 43179 01474 60464 47285 42887 83365 46504 02076 59648 34343 18369"

describe("parseFingerprint / fingerprintMatches", () => {
  it("takes the 60 digits with or without spaces, or their first 20 or more", () => {
    for (const typed of [FP, FP.replace(/ /g, ""), "  76155 4317901474 60464 ", "76155431790147460464472"]) {
      const parsed = parseFingerprint(typed)
      assert.isTrue("digits" in parsed, typed)
      if ("digits" in parsed) assert.isTrue(fingerprintMatches(parsed.digits, KEY), typed)
    }
  })

  it("refuses fewer than 20 digits, more than 60, and anything but digits and spaces", () => {
    for (const typed of ["", "76155 43179 01474 6046", `${FP} 1`, "76155-43179-01474-60464", "76155 43179 01474 6046x"]) {
      assert.isTrue("problem" in parseFingerprint(typed), typed)
    }
    assert.include((parseFingerprint("1234") as { problem: string }).problem, "at least its first 20")
  })

  it("matches only the key whose fingerprint starts with the digits", () => {
    const other = generateKeyPair().publicKey
    const digits = (parseFingerprint(FP.slice(0, 23)) as { digits: string }).digits
    assert.isTrue(fingerprintMatches(digits, KEY))
    assert.isFalse(fingerprintMatches(digits, other))
    assert.isFalse(fingerprintMatches("76155431790147460464" + "9", KEY))
  })
})

const tempDir = Effect.acquireRelease(
  Effect.sync(() => fs.mkdtempSync(path.join(os.tmpdir(), "p2pchat-trust-"))),
  (dir) => Effect.sync(() => fs.rmSync(dir, { recursive: true, force: true }))
)

/** Trust over a History in a fresh data dir, where bob's pinned key `old` was refused for `next`. */
const refusedChange = Effect.gen(function*() {
  const context = yield* Layer.build(trustLayer.pipe(Layer.provideMerge(History.layer), Layer.provide(Store.layer(yield* tempDir))))
  const old = generateKeyPair().publicKey
  const next = generateKeyPair().publicKey
  assert.strictEqual((yield* Effect.provideContext(checkTrust("bob", old), context))._tag, "FirstUse")
  assert.strictEqual((yield* Effect.provideContext(checkTrust("bob", next), context))._tag, "Changed")
  const trust = Context.get(context, Trust)
  const pinnedNow = Effect.map(Effect.orDie(trust.pinned("bob")), (k) => Option.map(k, fingerprint))
  return { trust, old, next, pinnedNow }
})

const spaced = (fp: string, digits: number) => fp.replace(/ /g, "").slice(0, digits).replace(/(\d{5})(?=\d)/g, "$1 ")

describe("Trust.trustPeer with a fingerprint", () => {
  it.effect("the presented key's fingerprint (first 20 digits) pins it and clears the offer", () =>
    Effect.gen(function*() {
      const { trust, next, pinnedNow } = yield* refusedChange
      const trusted = yield* trust.trustPeer("BOB", spaced(fingerprint(next), 20))
      assert.strictEqual(trusted, fingerprint(next))
      assert.deepStrictEqual(yield* pinnedNow, Option.some(fingerprint(next)))
      assert.isTrue(Option.isNone(yield* Effect.orDie(trust.presented("bob"))))
    }))

  it.effect("a fingerprint of no key bob proved pins nothing (NoMatch); a malformed one neither (BadFingerprint)", () =>
    Effect.gen(function*() {
      const { trust, old, next, pinnedNow } = yield* refusedChange
      const wrong = yield* Effect.flip(trust.trustPeer("bob", fingerprint(generateKeyPair().publicKey)))
      assert.strictEqual(wrong.reason, "NoMatch")
      assert.include(wrong.message, "nothing trusted")
      assert.include(wrong.message, "`trust bob`")
      const short = yield* Effect.flip(trust.trustPeer("bob", fingerprint(next).slice(0, 17)))
      assert.strictEqual(short.reason, "BadFingerprint")
      const none = yield* Effect.flip(trust.trustPeer("bob", ""))
      assert.strictEqual(none.reason, "BadFingerprint")
      assert.deepStrictEqual(yield* pinnedNow, Option.some(fingerprint(old)))
      assert.isTrue(Option.isSome(yield* Effect.orDie(trust.presented("bob"))))
    }))

  it.effect("the pinned key's fingerprint keeps it pinned; a name that proved no key has nothing to trust", () =>
    Effect.gen(function*() {
      const { trust, old, pinnedNow } = yield* refusedChange
      assert.strictEqual(yield* trust.trustPeer("bob", fingerprint(old)), fingerprint(old))
      assert.deepStrictEqual(yield* pinnedNow, Option.some(fingerprint(old)))
      // carol only announced a key (never proven): no fingerprint pins anything for her
      const carol = yield* Effect.flip(trust.trustPeer("carol", fingerprint(generateKeyPair().publicKey)))
      assert.strictEqual(carol.reason, "NoMatch")
      assert.isTrue(Option.isNone(yield* Effect.orDie(trust.pinned("carol"))))
    }))

  it.effect("`trust USER` alone: the pinned and offered fingerprints, and what to give", () =>
    Effect.gen(function*() {
      const { trust, old, next } = yield* refusedChange
      const lines = trustChoices("bob", yield* Effect.orDie(trust.pinned("bob")), yield* Effect.orDie(trust.presented("bob")))
      assert.include(lines[0]!, fingerprint(old))
      assert.include(lines[1]!, fingerprint(next))
      assert.include(lines[2]!, "give the fingerprint you compared")
      assert.include(lines[2]!, "`trust bob FINGERPRINT`")
    }))
})
