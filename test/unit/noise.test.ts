import { describe, it, expect } from "vitest"
import { readFileSync } from "node:fs"
import * as fc from "fast-check"
import {
  CipherState,
  MAX_MESSAGE_LENGTH,
  MAX_PLAINTEXT_LENGTH,
  NoiseError,
  PROTOCOL_NAME,
  createHandshake,
  generateKeyPair,
  publicKeyOf,
  type Handshake,
  type KeyPair,
  type NoiseErrorCode,
  type Transport
} from "../../src/domain/Noise.ts"

// ---------------------------------------------------------------------------------------------
// Fixture

interface VectorMessage {
  readonly payload: string
  readonly ciphertext: string
}
interface Vector {
  readonly protocol_name: string
  readonly init_prologue: string
  readonly init_static: string
  readonly init_ephemeral: string
  readonly resp_prologue: string
  readonly resp_static: string
  readonly resp_ephemeral: string
  readonly init_psks?: ReadonlyArray<string>
  readonly resp_psks?: ReadonlyArray<string>
  readonly handshake_hash?: string
  readonly messages: ReadonlyArray<VectorMessage>
  readonly source?: string
}

const fixture = JSON.parse(
  readFileSync(new URL("../fixtures/noise-xx.json", import.meta.url), "utf8")
) as { readonly description: string; readonly vectors: ReadonlyArray<Vector> }

const CLAIMED = /^Noise_XX_25519_(ChaChaPoly|AESGCM)_SHA256$/
const KNOWN_FIELDS = new Set([
  "protocol_name",
  "init_prologue",
  "init_static",
  "init_ephemeral",
  "resp_prologue",
  "resp_static",
  "resp_ephemeral",
  "init_psks",
  "resp_psks",
  "handshake_hash",
  "messages",
  "source"
])

// ---------------------------------------------------------------------------------------------
// Helpers

const hex = (u: Uint8Array): string => Buffer.from(u).toString("hex")
const unhex = (s: string): Uint8Array => new Uint8Array(Buffer.from(s, "hex"))
const utf8 = (s: string): Uint8Array => new TextEncoder().encode(s)
const keyPairFrom = (privHex: string): KeyPair => {
  const privateKey = unhex(privHex)
  return { privateKey, publicKey: publicKeyOf(privateKey) }
}
const flip = (u: Uint8Array, at: number, mask = 0x01): Uint8Array => {
  const c = new Uint8Array(u)
  c[at] = (c[at] ?? 0) ^ mask
  return c
}

/** Byte equality regardless of Buffer vs Uint8Array class. */
const sameBytes = (actual: Uint8Array | undefined, expected: Uint8Array): void => {
  expect(actual).toBeInstanceOf(Uint8Array)
  expect(hex(actual!)).toBe(hex(expected))
}

/** Asserts that fn throws a NoiseError (optionally with the given code) and nothing else. */
const expectNoiseError = (fn: () => unknown, code?: NoiseErrorCode): NoiseError => {
  let caught: unknown
  try {
    fn()
  } catch (e) {
    caught = e
  }
  expect(caught, "expected a NoiseError to be thrown").toBeInstanceOf(NoiseError)
  const err = caught as NoiseError
  if (code !== undefined) expect(err.code).toBe(code)
  return err
}

interface Pair {
  readonly i: Handshake
  readonly r: Handshake
  readonly iStatic: KeyPair
  readonly rStatic: KeyPair
}

const newPair = (protocolName: string = PROTOCOL_NAME, prologue = utf8("p2pchat/1")): Pair => {
  const iStatic = generateKeyPair()
  const rStatic = generateKeyPair()
  return {
    i: createHandshake({ initiator: true, prologue, staticKey: iStatic, protocolName }),
    r: createHandshake({ initiator: false, prologue, staticKey: rStatic, protocolName }),
    iStatic,
    rStatic
  }
}

const completeHandshake = (p: Pair): { ti: Transport; tr: Transport } => {
  p.r.readMessage(p.i.writeMessage(new Uint8Array(0)))
  p.i.readMessage(p.r.writeMessage(utf8('{"username":"bob"}')))
  p.r.readMessage(p.i.writeMessage(utf8('{"username":"alice"}')))
  return { ti: p.i.split(), tr: p.r.split() }
}

// ---------------------------------------------------------------------------------------------

describe("Noise XX published test vectors (test/fixtures/noise-xx.json)", () => {
  const vectors = fixture.vectors

  it("the fixture only holds protocols we claim (XX, 25519, ChaChaPoly|AESGCM, SHA256), without PSKs or unknown fields", () => {
    expect(vectors.length).toBeGreaterThan(0)
    for (const [n, v] of vectors.entries()) {
      if (!CLAIMED.test(v.protocol_name)) {
        throw new Error(`vector #${n} is ${v.protocol_name}, which this implementation does not claim`)
      }
      const unknown = Object.keys(v).filter((k) => !KNOWN_FIELDS.has(k))
      expect(unknown, `vector #${n} has fields this test does not understand`).toEqual([])
      expect(v.init_psks ?? [], `vector #${n} uses PSKs`).toEqual([])
      expect(v.resp_psks ?? [], `vector #${n} uses PSKs`).toEqual([])
      expect(v.messages.length, `vector #${n} lacks the three handshake messages`).toBeGreaterThanOrEqual(3)
    }
    // Report how many ran (4 in the fixture as shipped: 2 ChaChaPoly, 2 AESGCM).
    console.info(`noise-xx.json: ${vectors.length} vectors, all claimed`)
  })

  it("covers the protocol p2pchat uses (Noise_XX_25519_ChaChaPoly_SHA256)", () => {
    expect(vectors.some((v) => v.protocol_name === PROTOCOL_NAME)).toBe(true)
  })

  for (const [n, v] of vectors.entries()) {
    it(`vector #${n} ${v.protocol_name} (${v.source ?? "?"}): every handshake and transport ciphertext, payload and the handshake hash are reproduced byte for byte`, () => {
      expect(v.protocol_name).toMatch(CLAIMED)
      const iStatic = keyPairFrom(v.init_static)
      const rStatic = keyPairFrom(v.resp_static)
      const i = createHandshake({
        initiator: true,
        prologue: unhex(v.init_prologue),
        staticKey: iStatic,
        ephemeral: keyPairFrom(v.init_ephemeral),
        protocolName: v.protocol_name
      })
      const r = createHandshake({
        initiator: false,
        prologue: unhex(v.resp_prologue),
        staticKey: rStatic,
        ephemeral: keyPairFrom(v.resp_ephemeral),
        protocolName: v.protocol_name
      })

      // Handshake: messages 0 and 2 from the initiator, 1 from the responder.
      for (let k = 0; k < 3; k++) {
        const m = v.messages[k]!
        const [writer, reader] = k % 2 === 0 ? [i, r] : [r, i]
        expect(writer.isMyTurn).toBe(true)
        expect(hex(writer.writeMessage(unhex(m.payload))), `handshake message ${k} ciphertext`).toBe(m.ciphertext)
        // The reader decrypts the published ciphertext, not just our own output.
        expect(hex(reader.readMessage(unhex(m.ciphertext))), `handshake message ${k} payload`).toBe(m.payload)
      }
      expect(i.complete && r.complete).toBe(true)
      expect(hex(i.remoteStatic()!)).toBe(hex(rStatic.publicKey))
      expect(hex(r.remoteStatic()!)).toBe(hex(iStatic.publicKey))
      expect(hex(i.handshakeHash())).toBe(hex(r.handshakeHash()))
      if (v.handshake_hash !== undefined) expect(hex(i.handshakeHash())).toBe(v.handshake_hash)

      // Transport: the sender keeps alternating after the handshake, i.e. message k is
      // initiator->responder for even k and responder->initiator for odd k (so message 3,
      // the first transport message, is sent by the responder). Verified against every vector.
      const ti = i.split()
      const tr = r.split()
      for (let k = 3; k < v.messages.length; k++) {
        const m = v.messages[k]!
        const [send, recv] = k % 2 === 0 ? [ti, tr] : [tr, ti]
        expect(hex(send.encrypt(unhex(m.payload))), `transport message ${k} ciphertext`).toBe(m.ciphertext)
        expect(hex(recv.decrypt(unhex(m.ciphertext))), `transport message ${k} payload`).toBe(m.payload)
      }
    })
  }
})

describe("Noise XX sessions with fresh random keys", () => {
  for (const protocolName of ["Noise_XX_25519_ChaChaPoly_SHA256", "Noise_XX_25519_AESGCM_SHA256"]) {
    it(`${protocolName}: completes, delivers handshake payloads, and carries transport messages both ways in any interleaving`, () => {
      const p = newPair(protocolName)
      sameBytes(p.r.readMessage(p.i.writeMessage()), new Uint8Array(0))
      expect(new TextDecoder().decode(p.i.readMessage(p.r.writeMessage(utf8('{"username":"bob"}'))))).toBe('{"username":"bob"}')
      expect(new TextDecoder().decode(p.r.readMessage(p.i.writeMessage(utf8('{"username":"alice"}'))))).toBe('{"username":"alice"}')
      expect(p.i.complete).toBe(true)
      expect(p.r.complete).toBe(true)
      expect(hex(p.i.handshakeHash())).toBe(hex(p.r.handshakeHash()))
      const ti = p.i.split()
      const tr = p.r.split()
      expect(p.i.split()).toBe(ti) // split is idempotent: one Transport, one nonce sequence

      const sizes = [0, 1, 15, 16, 17, 1024, MAX_PLAINTEXT_LENGTH]
      for (let n = 0; n < 60; n++) {
        const size = sizes[n % sizes.length]!
        const msg = new Uint8Array(size).map((_, j) => (j * 31 + n) & 0xff)
        // uneven interleaving: initiator sends bursts, responder answers every third
        const c1 = ti.encrypt(msg)
        expect(c1.byteLength).toBe(size + 16)
        sameBytes(tr.decrypt(c1), msg)
        if (n % 3 === 0) {
          const c2 = tr.encrypt(msg)
          sameBytes(ti.decrypt(c2), msg)
        }
      }
    })
  }

  it("remoteStatic equals the peer's static public key: initiator learns it from message 2, responder from message 3", () => {
    const p = newPair()
    expect(p.i.remoteStatic()).toBeUndefined()
    expect(p.r.remoteStatic()).toBeUndefined()
    p.r.readMessage(p.i.writeMessage())
    p.i.readMessage(p.r.writeMessage())
    sameBytes(p.i.remoteStatic(), p.rStatic.publicKey)
    expect(p.r.remoteStatic()).toBeUndefined()
    p.r.readMessage(p.i.writeMessage())
    sameBytes(p.r.remoteStatic(), p.iStatic.publicKey)
  })

  it("two sessions between the same static keys use fresh ephemerals, so their ciphertexts and handshake hashes differ", () => {
    const iStatic = generateKeyPair()
    const rStatic = generateKeyPair()
    const run = () =>
      completeHandshake({
        i: createHandshake({ initiator: true, prologue: utf8("p2pchat/1"), staticKey: iStatic }),
        r: createHandshake({ initiator: false, prologue: utf8("p2pchat/1"), staticKey: rStatic }),
        iStatic,
        rStatic
      })
    const a = run()
    const b = run()
    const pt = utf8("same plaintext")
    expect(hex(a.ti.encrypt(pt))).not.toBe(hex(b.ti.encrypt(pt)))
  })

  it("generateKeyPair gives 32-byte keys whose publicKey is publicKeyOf(privateKey)", () => {
    const kp = generateKeyPair()
    expect(kp.privateKey.byteLength).toBe(32)
    expect(kp.publicKey.byteLength).toBe(32)
    sameBytes(publicKeyOf(kp.privateKey), kp.publicKey)
  })

  it("publicKeyOf matches the RFC 7748 section 6.1 X25519 example", () => {
    const alicePriv = unhex("77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a")
    expect(hex(publicKeyOf(alicePriv))).toBe("8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a")
  })
})

describe("Noise XX handshake rejects bad input cleanly (NoiseError, never another exception)", () => {
  it("a different prologue on each side makes the initiator reject message 2", () => {
    const iStatic = generateKeyPair()
    const i = createHandshake({ initiator: true, prologue: utf8("p2pchat/1"), staticKey: iStatic })
    const r = createHandshake({ initiator: false, prologue: utf8("p2pchat/2"), staticKey: generateKeyPair() })
    r.readMessage(i.writeMessage())
    expectNoiseError(() => i.readMessage(r.writeMessage()), "DecryptFailed")
    expect(i.failed).toBe(true)
  })

  // Flip one bit in every byte of one handshake message and check the handshake can never complete.
  for (const target of [0, 1, 2] as const) {
    it(`flipping the low or high bit of any byte of handshake message ${target + 1} makes the handshake fail at the first step that can detect it`, () => {
      const payloads = [utf8("hello"), utf8('{"username":"bob"}'), utf8('{"username":"alice"}')]
      // length of the message to tamper with, from an untampered run
      const probe = newPair()
      const lens: number[] = []
      const m1 = probe.i.writeMessage(payloads[0]!)
      lens.push(m1.byteLength)
      probe.r.readMessage(m1)
      const m2 = probe.r.writeMessage(payloads[1]!)
      lens.push(m2.byteLength)
      probe.i.readMessage(m2)
      lens.push(probe.i.writeMessage(payloads[2]!).byteLength)

      for (let at = 0; at < lens[target]!; at++) {
        for (const mask of [0x01, 0x80]) {
          const p = newPair()
          const steps: Array<[Handshake, Handshake]> = [
            [p.i, p.r],
            [p.r, p.i],
            [p.i, p.r]
          ]
          let failedAt = -1
          for (let k = 0; k < 3; k++) {
            const [w, rd] = steps[k]!
            try {
              let m = w.writeMessage(payloads[k]!)
              if (k === target) m = flip(m, at, mask)
              rd.readMessage(m)
            } catch (e) {
              expect(e).toBeInstanceOf(NoiseError)
              failedAt = k
              break
            }
          }
          // message 1 is not authenticated by itself: its tampering is caught when message 2 is
          // processed (different h, or a different ee). Messages 2 and 3 are caught on reading.
          expect(failedAt, `tampered byte ${at} mask ${mask} of message ${target + 1}`).toBe(target === 0 ? 1 : target)
          expect(p.i.complete && p.r.complete).toBe(false)
        }
      }
    })
  }

  it("a truncated or overlong handshake message is rejected with a NoiseError", () => {
    // message 1 shorter than an ephemeral key
    expectNoiseError(() => newPair().r.readMessage(new Uint8Array(31)), "InvalidLength")
    // message 2 shorter than e + encrypted s + tag
    {
      const p = newPair()
      p.r.readMessage(p.i.writeMessage())
      const m2 = p.r.writeMessage()
      expectNoiseError(() => p.i.readMessage(m2.subarray(0, m2.byteLength - 1)), "InvalidLength")
    }
    // message 2 with a trailing extra byte fails authentication of the payload
    {
      const p = newPair()
      p.r.readMessage(p.i.writeMessage())
      const m2 = p.r.writeMessage()
      const longer = new Uint8Array(m2.byteLength + 1)
      longer.set(m2)
      expectNoiseError(() => p.i.readMessage(longer), "DecryptFailed")
    }
    // message 3 truncated by one byte
    {
      const p = newPair()
      p.r.readMessage(p.i.writeMessage())
      p.i.readMessage(p.r.writeMessage())
      const m3 = p.i.writeMessage(utf8("x"))
      expectNoiseError(() => p.r.readMessage(m3.subarray(0, m3.byteLength - 1)), "DecryptFailed")
    }
    // beyond the Noise maximum of 65535 bytes
    expectNoiseError(() => newPair().r.readMessage(new Uint8Array(MAX_MESSAGE_LENGTH + 1)), "InvalidLength")
    expectNoiseError(() => newPair().i.writeMessage(new Uint8Array(MAX_MESSAGE_LENGTH - 31)), "InvalidLength")
  })

  it("the largest handshake payloads that fit in 65535 bytes are accepted", () => {
    const p = newPair()
    const m1 = p.i.writeMessage(new Uint8Array(MAX_MESSAGE_LENGTH - 32))
    expect(m1.byteLength).toBe(MAX_MESSAGE_LENGTH)
    p.r.readMessage(m1)
    const m2 = p.r.writeMessage(new Uint8Array(MAX_MESSAGE_LENGTH - 32 - 48 - 16))
    expect(m2.byteLength).toBe(MAX_MESSAGE_LENGTH)
    p.i.readMessage(m2)
  })

  it("out-of-turn calls are rejected: reading before writing, writing twice, calls after completion, split/hash before completion", () => {
    expectNoiseError(() => newPair().i.readMessage(new Uint8Array(32)), "InvalidState")
    expectNoiseError(() => newPair().r.writeMessage(), "InvalidState")
    {
      const p = newPair()
      p.i.writeMessage()
      expectNoiseError(() => p.i.writeMessage(), "InvalidState")
    }
    {
      const p = newPair()
      expectNoiseError(() => p.i.split(), "InvalidState")
      expectNoiseError(() => p.i.handshakeHash(), "InvalidState")
      completeHandshake(p)
      expectNoiseError(() => p.i.writeMessage(), "InvalidState")
      expectNoiseError(() => p.r.readMessage(new Uint8Array(64)), "InvalidState")
    }
  })

  it("after any failure the handshake stays failed: even the genuine message is then refused", () => {
    const p = newPair()
    const m1 = p.i.writeMessage()
    p.r.readMessage(m1)
    const m2 = p.r.writeMessage()
    expectNoiseError(() => p.i.readMessage(flip(m2, 40)), "DecryptFailed")
    expect(p.i.failed).toBe(true)
    expectNoiseError(() => p.i.readMessage(m2), "InvalidState")
    expectNoiseError(() => p.i.writeMessage(), "InvalidState")
    expect(p.i.complete).toBe(false)
  })

  it("a low-order (all-zero) ephemeral key from the peer is refused with a NoiseError", () => {
    const p = newPair()
    p.r.readMessage(new Uint8Array(32)) // e = 0: hashing it is harmless
    expectNoiseError(() => p.r.writeMessage(), "DhFailed") // ee would be all zeros
  })

  it("random garbage as any handshake message yields only a NoiseError", () => {
    fc.assert(
      fc.property(fc.uint8Array({ minLength: 0, maxLength: 300 }), fc.integer({ min: 0, max: 2 }), (junk, step) => {
        const p = newPair()
        try {
          if (step === 0) {
            // message 1 is unauthenticated: garbage of >= 32 bytes is accepted, then message 2
            // from the responder is written normally; we only require "no foreign exception".
            p.r.readMessage(junk)
            p.r.writeMessage()
          } else if (step === 1) {
            p.r.readMessage(p.i.writeMessage())
            p.i.readMessage(junk)
          } else {
            p.r.readMessage(p.i.writeMessage())
            p.i.readMessage(p.r.writeMessage())
            p.r.readMessage(junk)
          }
        } catch (e) {
          if (!(e instanceof NoiseError)) throw e
        }
        if (step > 0) expect(p.i.complete && p.r.complete).toBe(false)
      }),
      { numRuns: 150 }
    )
  })

  it("bad arguments are NoiseErrors: unsupported protocol, mismatched key pair, non-bytes input", () => {
    const s = generateKeyPair()
    expectNoiseError(
      () => createHandshake({ initiator: true, prologue: new Uint8Array(0), staticKey: s, protocolName: "Noise_IK_25519_ChaChaPoly_SHA256" }),
      "UnsupportedProtocol"
    )
    expectNoiseError(
      () => createHandshake({ initiator: true, prologue: new Uint8Array(0), staticKey: { privateKey: s.privateKey, publicKey: generateKeyPair().publicKey } }),
      "InvalidArgument"
    )
    expectNoiseError(
      () => createHandshake({ initiator: true, prologue: new Uint8Array(0), staticKey: { privateKey: new Uint8Array(31), publicKey: s.publicKey } }),
      "InvalidLength"
    )
    expectNoiseError(() => newPair().r.readMessage("not bytes" as unknown as Uint8Array), "InvalidArgument")
  })
})

describe("Noise transport rejects tampered, replayed, reordered, reflected and truncated frames", () => {
  it("a frame with any single byte altered is rejected, and the genuine frame is still accepted afterwards (nonce not advanced)", () => {
    const { ti, tr } = completeHandshake(newPair())
    const pt = utf8('{"type":"msg","id":"1","text":"hi","sentAt":"2024-01-01T00:00:00Z"}')
    const ct = ti.encrypt(pt)
    for (let at = 0; at < ct.byteLength; at++) {
      expectNoiseError(() => tr.decrypt(flip(ct, at)), "DecryptFailed")
    }
    sameBytes(tr.decrypt(ct), pt)
  })

  it("a replayed frame (the same ciphertext twice) is rejected the second time", () => {
    const { ti, tr } = completeHandshake(newPair())
    const ct = ti.encrypt(utf8("once"))
    sameBytes(tr.decrypt(ct), utf8("once"))
    expectNoiseError(() => tr.decrypt(ct), "DecryptFailed")
    // the session can still go on in order (the caller would end it, but state is not corrupted)
    sameBytes(tr.decrypt(ti.encrypt(utf8("next"))), utf8("next"))
  })

  it("reordered frames are rejected: frame 2 before frame 1 fails, and since n did not advance frame 1 then 2 still decrypt", () => {
    const { ti, tr } = completeHandshake(newPair())
    const c1 = ti.encrypt(utf8("one"))
    const c2 = ti.encrypt(utf8("two"))
    expectNoiseError(() => tr.decrypt(c2), "DecryptFailed")
    sameBytes(tr.decrypt(c1), utf8("one"))
    sameBytes(tr.decrypt(c2), utf8("two"))
  })

  it("a dropped frame makes every later frame fail (no skipping ahead)", () => {
    const { ti, tr } = completeHandshake(newPair())
    ti.encrypt(utf8("lost"))
    for (let n = 0; n < 5; n++) expectNoiseError(() => tr.decrypt(ti.encrypt(utf8(`m${n}`))), "DecryptFailed")
  })

  it("truncated frames (one byte short, tag only, shorter than a tag, empty) are rejected", () => {
    const { ti, tr } = completeHandshake(newPair())
    const ct = ti.encrypt(utf8("truncate me"))
    expectNoiseError(() => tr.decrypt(ct.subarray(0, ct.byteLength - 1)), "DecryptFailed")
    expectNoiseError(() => tr.decrypt(ct.subarray(ct.byteLength - 16)), "DecryptFailed")
    expectNoiseError(() => tr.decrypt(ct.subarray(0, 15)), "InvalidLength")
    expectNoiseError(() => tr.decrypt(new Uint8Array(0)), "InvalidLength")
    sameBytes(tr.decrypt(ct), utf8("truncate me"))
  })

  it("a frame reflected back to its sender, or from another session, is rejected", () => {
    const a = completeHandshake(newPair())
    const b = completeHandshake(newPair())
    const ct = a.ti.encrypt(utf8("to responder"))
    expectNoiseError(() => a.ti.decrypt(ct), "DecryptFailed")
    expectNoiseError(() => b.tr.decrypt(ct), "DecryptFailed")
  })

  it("enforces the 65535-byte Noise message limit on both encrypt and decrypt", () => {
    const { ti, tr } = completeHandshake(newPair())
    expectNoiseError(() => ti.encrypt(new Uint8Array(MAX_PLAINTEXT_LENGTH + 1)), "InvalidLength")
    expectNoiseError(() => tr.decrypt(new Uint8Array(MAX_MESSAGE_LENGTH + 1)), "InvalidLength")
    const big = ti.encrypt(new Uint8Array(MAX_PLAINTEXT_LENGTH))
    expect(big.byteLength).toBe(MAX_MESSAGE_LENGTH)
    expect(tr.decrypt(big).byteLength).toBe(MAX_PLAINTEXT_LENGTH)
  })

  it("random garbage frames are rejected with a NoiseError only", () => {
    const { tr } = completeHandshake(newPair())
    fc.assert(
      fc.property(fc.uint8Array({ minLength: 0, maxLength: 200 }), (junk) => {
        expectNoiseError(() => tr.decrypt(junk))
      }),
      { numRuns: 200 }
    )
  })
})

describe("Noise CipherState nonces", () => {
  for (const cipher of ["ChaChaPoly", "AESGCM"] as const) {
    it(`${cipher}: nonce 2^64-1 is reserved, so encrypting or decrypting with it fails with NonceExhausted`, () => {
      const key = new Uint8Array(32).fill(7)
      const enc = new CipherState(cipher, key)
      const dec = new CipherState(cipher, key)
      enc.setNonce(0xfffffffffffffffen)
      dec.setNonce(0xfffffffffffffffen)
      const ct = enc.encryptWithAd(new Uint8Array(0), utf8("last"))
      sameBytes(dec.decryptWithAd(new Uint8Array(0), ct), utf8("last"))
      expect(enc.nonce()).toBe(0xffffffffffffffffn)
      expectNoiseError(() => enc.encryptWithAd(new Uint8Array(0), utf8("x")), "NonceExhausted")
      expectNoiseError(() => dec.decryptWithAd(new Uint8Array(0), ct), "NonceExhausted")
    })

    it(`${cipher}: the nonce counter carries from the low to the high 32 bits and a failed decrypt does not advance it`, () => {
      const key = new Uint8Array(32).fill(9)
      const enc = new CipherState(cipher, key)
      const dec = new CipherState(cipher, key)
      enc.setNonce(0xffffffffn)
      dec.setNonce(0xffffffffn)
      const c1 = enc.encryptWithAd(new Uint8Array(0), utf8("a"))
      const c2 = enc.encryptWithAd(new Uint8Array(0), utf8("b"))
      expect(enc.nonce()).toBe(0x100000001n)
      expectNoiseError(() => dec.decryptWithAd(new Uint8Array(0), c2), "DecryptFailed")
      expect(dec.nonce()).toBe(0xffffffffn)
      sameBytes(dec.decryptWithAd(new Uint8Array(0), c1), utf8("a"))
      sameBytes(dec.decryptWithAd(new Uint8Array(0), c2), utf8("b"))
    })
  }

  it("an empty CipherState (no key yet) passes data through and does not count", () => {
    const cs = new CipherState("ChaChaPoly")
    const pt = utf8("clear")
    expect(cs.hasKey()).toBe(false)
    expect(cs.encryptWithAd(new Uint8Array(0), pt)).toBe(pt)
    expect(cs.nonce()).toBe(0n)
  })
})
