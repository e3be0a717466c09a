/**
 * The fuzz harness (test/fuzz) at a modest count, so that `npm test` runs it on every
 * change; `npm run fuzz -- --runs 100000` runs the same properties at length. Each run draws
 * a new seed (P2PCHAT_FUZZ_SEED fixes it); a failure prints the seed and the command that
 * replays the failing case. Plus fast-check properties over the pure decoders, whose
 * counterexamples fast-check shrinks and reports with their own seed.
 */
import fc from "fast-check"
import { describe, expect, it } from "vitest"
import { createHandshake, generateKeyPair, NoiseError } from "../../src/domain/Noise.ts"
import { checkDatagram, checkStream } from "../fuzz/pure.ts"
import { randomSeed, Rng } from "../fuzz/rng.ts"
import { formatSummary, runFuzz } from "../fuzz/run.ts"

const SEED = process.env["P2PCHAT_FUZZ_SEED"] === undefined ? undefined : Number(process.env["P2PCHAT_FUZZ_SEED"])
const enc = new TextEncoder()

describe("fuzz: hostile datagrams and byte streams into one in-process node", () => {
  it("random and mutated datagrams, classic/plain and secure streams: the node never stops serving, nothing invalid is stored or registered, every refusal is counted", async () => {
    const seed = SEED ?? randomSeed()
    const summary = await runFuzz({ runs: 6000, seed }).catch((e: unknown) => {
      throw new Error(`fuzz run with seed ${seed} crashed (P2PCHAT_FUZZ_SEED=${seed} replays it): ${(e as Error)?.stack ?? e}`)
    })
    expect(summary.failures, formatSummary(summary)).toBe(0)
    // The run really went through the network in both dialects, and its refusals were counted.
    expect(summary.datagrams).toBeGreaterThan(300)
    expect(summary.connections).toBeGreaterThan(800)
    expect(summary.refused).toBeGreaterThan(200)
    expect(summary.outcomes["good"]).toBeGreaterThan(50)
    expect(summary.pins, "secure sessions completed").toBeGreaterThan(20)
    expect(summary.secureUnsupported).toBe(0)
  }, 90_000)
})

describe("fast-check: the pure decoders on arbitrary input", () => {
  const keys = fc.oneof(
    fc.constantFrom("username", "bye", "proto", "port", "status", "id", "__proto__", "constructor", "prototype"),
    fc.constantFrom("unencrypted_message", "encrypted_message", "key", "ack", "hs", "ct", "from", "type", "text", "sentAt"),
    fc.string({ unit: "binary", maxLength: 8 })
  )
  const values = fc.oneof(
    fc.jsonValue({ maxDepth: 3 }),
    fc.string({ unit: "binary", maxLength: 40 }),
    fc.integer(),
    fc.double(),
    fc.constantFrom("p2pchat/1", "online", "away", "msg", "ack", "aGk=", "AAAA", "")
  )
  const objects = fc.dictionary(keys, values, { maxKeys: 6 })
  const runs = { numRuns: 400, ...(SEED === undefined ? {} : { seed: SEED }) }

  const noFailures = (failures: ReadonlyArray<{ property: string; detail: string }>) => {
    if (failures.length > 0) throw new Error(failures.map((f) => `${f.property}: ${f.detail}`).join("\n"))
  }

  it("decodePresence never throws and accepts exactly what PROTOCOL.md accepts (bytes and JSON objects)", () => {
    fc.assert(fc.property(fc.uint8Array({ maxLength: 1200 }), (bytes) => noFailures(checkDatagram(bytes))), runs)
    fc.assert(fc.property(objects, (o) => noFailures(checkDatagram(enc.encode(JSON.stringify(o))))), runs)
  })

  it("the splitter, decodeFrame and decodeInner never throw, agree with the rules, and split the same however the stream is cut", () => {
    fc.assert(
      fc.property(fc.array(fc.oneof(objects.map((o) => JSON.stringify(o)), fc.string({ unit: "binary" })), { maxLength: 5 }), fc.integer(), (parts, seed) =>
        noFailures(checkStream(enc.encode(parts.join(seed % 2 === 0 ? "" : "\n")), new Rng(seed)))),
      runs
    )
    fc.assert(fc.property(fc.uint8Array({ maxLength: 2000 }), fc.integer(), (bytes, seed) => noFailures(checkStream(bytes, new Rng(seed)))), runs)
  })

  it("Noise readMessage throws only NoiseError on arbitrary message 1", () => {
    const prologue = enc.encode("p2pchat/1")
    const staticKey = generateKeyPair()
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 200 }), (m1) => {
        const responder = createHandshake({ initiator: false, prologue, staticKey })
        try {
          responder.readMessage(m1)
        } catch (e) {
          if (!(e instanceof NoiseError)) throw e
        }
      }),
      { ...runs, numRuns: 200 }
    )
  })
})
