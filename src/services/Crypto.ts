/**
 * Keys and ciphers: the node's long-term identity (an X25519 key pair made on first
 * start, kept in the data dir readable by its owner only, announced as `id`), the
 * fingerprints people compare aloud, and Noise XX handshakes under that identity.
 */
import * as Context from "effect/Context"
import * as Data from "effect/Data"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import { randomBytes } from "node:crypto"
import * as fs from "node:fs"
import * as path from "node:path"
import { fingerprint } from "../domain/Fingerprint.ts"
import { createHandshake, generateKeyPair, type Handshake, type KeyPair, publicKeyOf } from "../domain/Noise.ts"
import { PROTO, type SignPresence } from "../domain/Presence.ts"
import { type PresenceSigner, presenceSigner } from "../domain/Xeddsa.ts"
import { Config } from "./Config.ts"
import { type Access, modeText, openToOthers, ownUid } from "./StoreChecks.ts"
import { StoreError } from "./StoreError.ts"
import { fsyncDir, O_NOFOLLOW } from "./Files.ts"
import { logInfo, secureDataDir } from "./StoreOpen.ts"

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
   * A fresh Noise_XX_25519_ChaChaPoly_SHA256 handshake with prologue `p2pchat/1` (or the
   * one given: a file session's, protocol.md 9), this node's static key and a new ephemeral
   * key. One per session; never reuse it.
   */
  readonly handshake: (initiator: boolean, prologue?: Uint8Array) => Effect.Effect<Handshake, CryptoError>
  /** Signs presence (announcements, byes) with the identity key itself (XEdDSA): base64url. */
  readonly signPresence: SignPresence
}

export class Crypto extends Context.Service<Crypto, CryptoShape>()("p2pchat/Crypto") {}

/** The Noise prologue of p2pchat/1: both ends must use it or the handshake fails. */
export const PROLOGUE: Uint8Array = new TextEncoder().encode(PROTO)

export const IDENTITY_FILE = "identity.key"

export const keyId = (publicKey: Uint8Array): string => Buffer.from(publicKey).toString("base64url")

export const idToKey = (id: string): Uint8Array => new Uint8Array(Buffer.from(id, "base64url"))

/** A CryptoError about the key file, with the way out that fits every refusal. */
const keyFileRefused = (file: string, problem: string) =>
  new CryptoError({
    message: `identity key ${file} ${problem}; p2pchat does not use it: put the key file itself in its place, ` +
      `or move it away to make a new identity (peers will see a changed key), or choose another --data-dir`
  })

/** Refuses a key file that is not a regular file, or is readable by others while another user owns it. */
const refuseKeyStat = (file: string, stat: fs.Stats): void => {
  if (!stat.isFile()) throw keyFileRefused(file, "is not a regular file")
  const uid = ownUid()
  if (uid !== undefined && openToOthers(stat) && stat.uid !== uid) {
    throw keyFileRefused(file, `is readable by others (mode ${modeText(stat)}) and owned by another user (uid ${stat.uid})`)
  }
}

/**
 * The key of an existing `identity.key`, or undefined when there is none. The file is
 * opened without following a symbolic link (refused: it could point at any file, whose
 * mode p2pchat would then change), and checked on the open descriptor. To a node
 * ("read-write"), a key readable by others is made 0600 again when the user owns it, with a
 * line that says so: refusing would only lock the user out of their identity over a mode
 * p2pchat can safely fix (whether to make a new one is theirs to decide); another user's such
 * file is refused. A read-only command (StoreRead.ts) refuses the same but fixes nothing, and
 * checks the file before it opens it too: it opens nothing it refuses.
 */
export const readKeyFile = (file: string, access: Access): Uint8Array | undefined => {
  const link = fs.lstatSync(file, { throwIfNoEntry: false })
  if (link === undefined) return undefined
  if (link.isSymbolicLink()) throw keyFileRefused(file, `is a symbolic link (to ${fs.readlinkSync(file)})`)
  if (access === "read-only") refuseKeyStat(file, link)
  let fd: number
  try {
    fd = fs.openSync(file, fs.constants.O_RDONLY | O_NOFOLLOW)
  } catch (e) {
    // replaced by a link since the lstat (ELOOP; EMLINK on FreeBSD)
    const code = (e as NodeJS.ErrnoException).code
    if (code === "ELOOP" || code === "EMLINK") throw keyFileRefused(file, "is a symbolic link")
    throw e
  }
  try {
    const stat = fs.fstatSync(fd)
    refuseKeyStat(file, stat)
    if (access === "read-write" && ownUid() !== undefined && openToOthers(stat)) {
      fs.fchmodSync(fd, 0o600)
      logInfo(`identity key ${file} was open to other users (mode ${modeText(stat)}); it is now 0600`)
    }
    const bytes = Buffer.alloc(32)
    if (stat.size !== 32 || fs.readSync(fd, bytes, 0, 32, 0) !== 32) {
      throw new CryptoError({
        message: `identity key ${file} is damaged (${stat.size} bytes, expected 32); ` +
          `restore it from a backup, or move it away to make a new identity (peers will see a changed key)`
      })
    }
    return new Uint8Array(bytes)
  } finally {
    fs.closeSync(fd)
  }
}

/**
 * A new file of mode 0600 under a random name in `dir` (crypto random: nobody can create
 * it beforehand), opened with O_CREAT | O_EXCL (which never follows a link) and O_NOFOLLOW.
 */
const createTempFile = (dir: string): { readonly name: string; readonly fd: number } => {
  const flags = fs.constants.O_CREAT | fs.constants.O_EXCL | fs.constants.O_WRONLY | O_NOFOLLOW
  for (let attempt = 1;; attempt++) {
    const name = path.join(dir, `.${IDENTITY_FILE}.${randomBytes(16).toString("hex")}.tmp`)
    try {
      return { name, fd: fs.openSync(name, flags, 0o600) }
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== "EEXIST" || attempt === 5) throw e
    }
  }
}

/**
 * Writes a new key: to a fresh temp file (createTempFile), fsynced, then given its name,
 * then the directory fsynced, so that a crash or power cut leaves either no key or the
 * whole key. The name is given with link(2), atomic like rename(2) and, unlike it, never
 * replacing a key another process made meanwhile (that key is used instead: one identity);
 * rename is the fallback where the file system has no hard links. Neither follows a link.
 */
const writeKeyFile = (dir: string, file: string, key: Uint8Array): Uint8Array => {
  const tmp = createTempFile(dir)
  try {
    try {
      fs.writeSync(tmp.fd, key)
      fs.fsyncSync(tmp.fd)
    } finally {
      fs.closeSync(tmp.fd)
    }
    try {
      fs.linkSync(tmp.name, file)
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code
      // made meanwhile by another p2pchat on this data dir: its key is the identity
      const theirs = code === "EEXIST" ? readKeyFile(file, "read-write") : undefined
      if (theirs !== undefined) return theirs
      if (code !== "EPERM" && code !== "ENOTSUP" && code !== "EOPNOTSUPP" && code !== "ENOSYS") throw e
      fs.renameSync(tmp.name, file)
    }
  } finally {
    fs.rmSync(tmp.name, { force: true })
  }
  fsyncDir(dir)
  return key
}

/**
 * Reads the identity key, or makes one, in a private data dir (StoreOpen's secureDataDir:
 * made 0700, or fixed, or refused). The file is the user's alone (0600) and never a link.
 */
export const loadOrCreateIdentity = (dataDir: string): Effect.Effect<Identity, CryptoError> =>
  Effect.try({
    try: () => {
      secureDataDir(dataDir)
      const file = path.join(dataDir, IDENTITY_FILE)
      const privateKey = readKeyFile(file, "read-write") ?? writeKeyFile(dataDir, file, generateKeyPair().privateKey)
      const publicKey = publicKeyOf(privateKey)
      return { keyPair: { publicKey, privateKey }, id: keyId(publicKey), fingerprint: fingerprint(publicKey) }
    },
    catch: (e) =>
      e instanceof CryptoError
        ? e
        : e instanceof StoreError
        ? new CryptoError({ message: e.message })
        : new CryptoError({ message: `cannot read or create the identity key in ${dataDir}: ${(e as Error).message}` })
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

/** The Crypto service of an identity. The signer is made on first use (a node that only sends never signs). */
export const fromIdentity = (identity: Identity): CryptoShape => {
  let signer: PresenceSigner | undefined
  return {
    identity,
    signPresence: (bytes) => {
      signer ??= presenceSigner(identity.keyPair.privateKey)
      return Buffer.from(signer.sign(bytes)).toString("base64url")
    },
    handshake: (initiator, prologue = PROLOGUE) =>
    Effect.try({
      try: () => createHandshake({ initiator, prologue, staticKey: identity.keyPair }),
      catch: (e) => new CryptoError({ message: `cannot start a Noise handshake: ${(e as Error).message}` })
    })
  }
}

/** Crypto under the data dir's identity, made on first start. */
export const make: Effect.Effect<CryptoShape, CryptoError, Config> = Effect.gen(function*() {
  const config = yield* Config
  return fromIdentity(yield* loadOrCreateIdentity(config.dataDir))
})

export const layer: Layer.Layer<Crypto, CryptoError, Config> = Layer.effect(Crypto, make)

/** Crypto with a given key pair instead of the data dir's (tests, benchmarks). */
export const layerFromKeyPair = (keyPair: KeyPair): Layer.Layer<Crypto, CryptoError> =>
  Layer.effect(Crypto, Effect.map(identityFromKeyPair(keyPair), fromIdentity))
