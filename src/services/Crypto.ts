/**
 * Keys and ciphers: the node's long-term identity (an X25519 key pair made on first
 * start, kept in the data dir readable by its owner only, announced as `id`), the
 * fingerprints people compare aloud, and Noise XX handshakes under that identity.
 */
import * as Context from "effect/Context"
import * as Data from "effect/Data"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as fs from "node:fs"
import * as path from "node:path"
import { fingerprint } from "../domain/Fingerprint.ts"
import { createHandshake, generateKeyPair, type Handshake, type KeyPair, publicKeyOf } from "../domain/Noise.ts"
import { PROTO } from "../domain/Presence.ts"
import { Config } from "./Config.ts"

export class CryptoError extends Data.TaggedError("CryptoError")<{ readonly message: string }> {}

export interface Identity {
  readonly keyPair: KeyPair
  /** The public key, base64url without padding, as announced. */
  readonly id: string
  readonly fingerprint: string
}

export interface CryptoShape {
  readonly identity: Identity
  /**
   * A fresh Noise_XX_25519_ChaChaPoly_SHA256 handshake with prologue `p2pchat/1`, this
   * node's static key and a new ephemeral key. One per session; never reuse it.
   */
  readonly handshake: (initiator: boolean) => Effect.Effect<Handshake, CryptoError>
}

export class Crypto extends Context.Service<Crypto, CryptoShape>()("p2pchat/Crypto") {}

/** The Noise prologue of p2pchat/1: both ends must use it or the handshake fails. */
export const PROLOGUE: Uint8Array = new TextEncoder().encode(PROTO)

export const IDENTITY_FILE = "identity.key"

export const keyId = (publicKey: Uint8Array): string => Buffer.from(publicKey).toString("base64url")

export const idToKey = (id: string): Uint8Array => new Uint8Array(Buffer.from(id, "base64url"))

/** Reads the identity key, or makes one (mode 0600, never overwriting an existing file). */
export const loadOrCreateIdentity = (dataDir: string): Effect.Effect<Identity, CryptoError> =>
  Effect.try({
    try: () => {
      const file = path.join(dataDir, IDENTITY_FILE)
      fs.mkdirSync(dataDir, { recursive: true, mode: 0o700 })
      let privateKey: Uint8Array
      if (fs.existsSync(file)) {
        const bytes = fs.readFileSync(file)
        if (bytes.length !== 32) {
          throw new CryptoError({
            message: `identity key ${file} is damaged (${bytes.length} bytes, expected 32); ` +
              `restore it from a backup, or move it away to make a new identity (peers will see a changed key)`
          })
        }
        if ((fs.statSync(file).mode & 0o077) !== 0) fs.chmodSync(file, 0o600)
        privateKey = new Uint8Array(bytes)
      } else {
        privateKey = generateKeyPair().privateKey
        // Write beside, then link into place: a crash never leaves half a key, and a
        // key made meanwhile by another process is kept (link fails if the name exists).
        const tmp = `${file}.${process.pid}.tmp`
        fs.writeFileSync(tmp, privateKey, { mode: 0o600, flag: "w" })
        try {
          fs.linkSync(tmp, file)
        } catch (e) {
          if ((e as NodeJS.ErrnoException).code !== "EEXIST") throw e
          privateKey = new Uint8Array(fs.readFileSync(file))
        } finally {
          fs.rmSync(tmp, { force: true })
        }
      }
      const publicKey = publicKeyOf(privateKey)
      return { keyPair: { publicKey, privateKey }, id: keyId(publicKey), fingerprint: fingerprint(publicKey) }
    },
    catch: (e) =>
      e instanceof CryptoError ? e : new CryptoError({ message: `cannot read or create the identity key in ${dataDir}: ${(e as Error).message}` })
  })

/** The identity of a key pair; fails unless the public key belongs to the private key. */
export const identityFromKeyPair = (keyPair: KeyPair): Effect.Effect<Identity, CryptoError> =>
  Effect.try({
    try: () => {
      const publicKey = publicKeyOf(keyPair.privateKey)
      if (Buffer.compare(Buffer.from(publicKey), Buffer.from(keyPair.publicKey)) !== 0) {
        throw new CryptoError({ message: "the public key of the key pair does not belong to its private key" })
      }
      return { keyPair: { publicKey, privateKey: keyPair.privateKey }, id: keyId(publicKey), fingerprint: fingerprint(publicKey) }
    },
    catch: (e) => e instanceof CryptoError ? e : new CryptoError({ message: `not a usable X25519 key pair: ${(e as Error).message}` })
  })

/** The Crypto service of an identity. */
export const fromIdentity = (identity: Identity): CryptoShape => ({
  identity,
  handshake: (initiator) =>
    Effect.try({
      try: () => createHandshake({ initiator, prologue: PROLOGUE, staticKey: identity.keyPair }),
      catch: (e) => new CryptoError({ message: `cannot start a Noise handshake: ${(e as Error).message}` })
    })
})

/** Crypto under the data dir's identity, made on first start. */
export const make: Effect.Effect<CryptoShape, CryptoError, Config> = Effect.gen(function*() {
  const config = yield* Config
  return fromIdentity(yield* loadOrCreateIdentity(config.dataDir))
})

export const layer: Layer.Layer<Crypto, CryptoError, Config> = Layer.effect(Crypto, make)

/** Crypto with a given key pair instead of the data dir's (tests, benchmarks). */
export const layerFromKeyPair = (keyPair: KeyPair): Layer.Layer<Crypto, CryptoError> =>
  Layer.effect(Crypto, Effect.map(identityFromKeyPair(keyPair), fromIdentity))
