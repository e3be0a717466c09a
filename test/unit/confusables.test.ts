/**
 * Look-alike names (Unicode TR39 skeletons): which pairs a person could take for one
 * another, and the registry's index of them.
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import { expect } from "vitest"
import { confusableKeys, looksAlike, skeleton, spelledOut } from "../../src/domain/Confusables.ts"
import { testConfig, Config } from "../../src/services/Config.ts"
import * as PeerRegistry from "../../src/services/PeerRegistry.ts"

const CYRILLIC_O = "\u043e"
const CYRILLIC_A = "\u0430"

describe("skeletons", () => {
  it("maps look-alike characters to one prototype, TR39's way (NFD, map, NFD)", () => {
    expect(skeleton(`b${CYRILLIC_O}b`)).toBe("bob")
    expect(skeleton("I")).toBe("l") // capital I and small L
    expect(skeleton("0")).toBe("O")
    expect(skeleton("m")).toBe("rn")
    // a decomposed and a composed é give one skeleton
    expect(skeleton("e\u0301")).toBe(skeleton("\u00e9"))
    expect(confusableKeys("b0b")).toEqual(["bob"])
  })

  it("says which different names read alike, and not a name with itself in another case", () => {
    const alike: Array<[string, string]> = [
      ["bob", `b${CYRILLIC_O}b`],
      ["alice", "aIice"],
      ["bob", "b0b"],
      ["lvan", "Ivan"],
      ["paypal", `p${CYRILLIC_A}yp${CYRILLIC_A}l`],
      ["mary", "rnary"],
      ["BOB", "\u0412\u041e\u0412"] // Cyrillic ВОВ
    ]
    for (const [a, b] of alike) {
      expect(looksAlike(a, b), `${a} ~ ${b}`).toBe(true)
      expect(looksAlike(b, a), `${b} ~ ${a}`).toBe(true)
    }
    const apart: Array<[string, string]> = [["bob", "Bob"], ["bob", "rob"], ["alice", "alicia"], ["ß", "ss"], ["ivan", "lvan"]]
    for (const [a, b] of apart) expect(looksAlike(a, b), `${a} !~ ${b}`).toBe(false)
  })

  it("spells out what is not plain ASCII", () => {
    expect(spelledOut(`b${CYRILLIC_O}b`)).toBe(`b${CYRILLIC_O}(U+043E)b`)
    expect(spelledOut("bob")).toBe("bob")
  })
})

describe("PeerRegistry.lookAlikes", () => {
  it.effect("finds the known names a new one reads like, through its index, and forgets a peer that left", () =>
    Effect.gen(function*() {
      const registry = yield* PeerRegistry.make.pipe(Effect.provideService(Config, testConfig({ dataDir: "/unused" })))
      yield* registry.heard({ username: "bob" }, "10.0.0.2", 6000)
      yield* registry.heard({ username: "carol" }, "10.0.0.3", 6000)
      assert.deepStrictEqual((yield* registry.lookAlikes(`b${CYRILLIC_O}b`)).map((p) => p.username), ["bob"])
      assert.deepStrictEqual((yield* registry.lookAlikes("BOB")).map((p) => p.username), [], "the same user is no look-alike")
      assert.deepStrictEqual((yield* registry.lookAlikes("caro1")).map((p) => p.username), ["carol"])
      yield* registry.bye({ bye: "bob" }, "10.0.0.2")
      assert.deepStrictEqual(yield* registry.lookAlikes(`b${CYRILLIC_O}b`), [])
    }).pipe(Effect.scoped))
})
