/**
 * A file session after its handshake (protocol.md 9.2): binary messages both ways, each a
 * 2-byte big-endian length and one Noise transport message, over the connection taken as
 * a byte stream (FrameChannel.raw). Both roles use it: the server (Server.ts) and the
 * puller (Fetch.ts). Also the one error of the transfer room's engine, FileError.
 */
import * as Data from "effect/Data"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Result from "effect/Result"
import { decodeMessage, encodeControl, MAX_MESSAGE_BYTES, type Message, type Reply, type Request } from "../domain/FileWire.ts"
import type { Transport as NoiseTransport } from "../domain/Noise.ts"
import { explainNoise } from "../dialects/noise/channel.ts"
import type { RawChannel, TransportError } from "../transport/Transport.ts"

/**
 * Why a file session or a transfer step failed:
 *   Network   the connection could not be made, broke or went silent: try again later
 *   Protocol  the peer sent what the protocol does not allow: the session ends
 *   Refused   the peer refused (not a recipient, an unknown offer, a key that is not the pinned one)
 *   Changed   the file changed or went away at the sender, or never matched its hash
 *   DiskFull  no room left on the disk: paused, tried again later
 *   Io        a local file could not be read or written
 *   Storage   the database could not be read or written
 */
export type FileErrorReason = "Network" | "Protocol" | "Refused" | "Changed" | "DiskFull" | "Io" | "Storage"

export class FileError extends Data.TaggedError("FileError")<{
  readonly reason: FileErrorReason
  readonly message: string
  readonly cause?: unknown
}> {}

export const fileError = (reason: FileErrorReason, message: string, cause?: unknown) =>
  new FileError({ reason, message, ...(cause === undefined ? {} : { cause }) })

const fromTransport = (e: TransportError) =>
  fileError(e.reason === "Closed" || e.reason === "Io" ? "Network" : "Protocol", `file session: ${e.message}`, e)

export interface FileSession {
  /** Encrypts and writes one message; waits while the socket's buffer is full (fails "Network" after the idle time). */
  readonly send: (plaintext: Uint8Array) => Effect.Effect<void, FileError>
  /**
   * Encrypts messages now, in order, without writing them: what `write` then writes (the
   * data stream's way: the next block is encrypted while the last one is still being
   * written). Each sealed batch must be written, in the order sealed, before any other
   * message is sent. The plaintexts can be reused once it returns. Throws a FileError.
   */
  readonly seal: (plaintexts: ReadonlyArray<Uint8Array>) => Sealed
  /** Writes a sealed batch in one go (one corked write); waits while the socket's buffer is full. */
  readonly write: (sealed: Sealed) => Effect.Effect<void, FileError>
  readonly control: (c: Request | Reply) => Effect.Effect<void, FileError>
  /** The next message, decrypted and split by kind; fails "Network" when none comes within the timeout. */
  readonly receive: Effect.Effect<Message, FileError>
}

/** Messages encrypted and framed, not written yet (FileSession.seal). */
export interface Sealed {
  readonly pieces: ReadonlyArray<Uint8Array>
}

/** What both halves of a session share: the first failure, after which every call fails with it. */
interface Health {
  broken: FileError | undefined
}

const failWith = (health: Health) => (e: FileError) => {
  health.broken ??= e
  return Effect.fail(e)
}

/** The sending half: messages sealed (encrypted, framed) and written. */
const makeSending = (raw: RawChannel, noise: NoiseTransport, idle: Duration.Input, health: Health) => {
  const fail = failWith(health)
  /** Each message: its 2-byte length, then the pieces of its Noise message (body and tag, not joined). */
  const seal = (plaintexts: ReadonlyArray<Uint8Array>): Sealed => {
    if (health.broken !== undefined) throw health.broken
    const pieces: Array<Uint8Array> = []
    try {
      for (const plaintext of plaintexts) {
        const body = noise.encryptPieces(plaintext)
        let n = 0
        for (const p of body) n += p.byteLength
        const head = new Uint8Array(2)
        head[0] = n >> 8
        head[1] = n & 0xff
        pieces.push(head, ...body)
      }
    } catch (e) {
      health.broken ??= fileError("Protocol", `file session: cannot encrypt: ${explainNoise(e)}`, e)
      throw health.broken
    }
    return { pieces }
  }
  const write = (sealed: Sealed): Effect.Effect<void, FileError> =>
    Effect.suspend(() => {
      if (health.broken !== undefined) return Effect.fail(health.broken)
      // a reader that stops reading is given up after `idle`, as a silent one is
      return raw.write(sealed.pieces).pipe(
        Effect.catch((e) => fail(fromTransport(e))),
        Effect.timeoutOrElse({ duration: idle, orElse: () => fail(fileError("Network", "file session: the peer stopped reading")) })
      )
    })
  const send = (plaintext: Uint8Array): Effect.Effect<void, FileError> =>
    Effect.suspend(() => {
      let sealed: Sealed
      try {
        sealed = seal([plaintext])
      } catch (e) {
        return Effect.fail(e as FileError)
      }
      return write(sealed)
    })
  return { seal, write, send }
}

/** The receiving half: messages already read are taken without a wait (and without a timer). */
const makeReceiving = (raw: RawChannel, noise: NoiseTransport, idle: Duration.Input, health: Health) => {
  const fail = failWith(health)
  const read = (n: number) => raw.read(n).pipe(Effect.catch((e) => fail(fromTransport(e))))
  /** A read that has to wait for the peer: given up after `idle`. */
  const waited = (n: number) =>
    read(n).pipe(
      Effect.timeoutOrElse({
        duration: idle,
        orElse: () => fail(fileError("Network", `file session: nothing came for ${Duration.format(Duration.fromInputUnsafe(idle))}`))
      })
    )

  /** One message's Noise message, decrypted and split by kind. */
  const open = (ct: Uint8Array): Effect.Effect<Message, FileError> => {
    let plain: Uint8Array
    try {
      plain = noise.decrypt(ct)
    } catch (e) {
      return fail(fileError("Protocol", "file session: a message failed to decrypt (altered in transit)", e))
    }
    const m = decodeMessage(plain)
    return Result.isFailure(m) ? fail(fileError("Protocol", `file session: ${m.failure}`)) : Effect.succeed(m.success)
  }

  /** After a message's 2-byte length: the message, at once when it is read already. */
  const afterHead = (head: Uint8Array): Effect.Effect<Message, FileError> => {
    const n = (head[0]! << 8) | head[1]!
    if (n < 16 || n > MAX_MESSAGE_BYTES) return fail(fileError("Protocol", `file session: a message of ${n} bytes`))
    const ct = raw.readBuffered(n)
    return ct !== undefined ? open(ct) : Effect.flatMap(waited(n), open)
  }

  return Effect.suspend(() => {
    if (health.broken !== undefined) return Effect.fail(health.broken)
    const head = raw.readBuffered(2)
    return head !== undefined ? afterHead(head) : Effect.flatMap(waited(2), afterHead)
  })
}

/** A session over `raw` with the handshake's transport keys; a silent peer is given up after `idle`. */
export const makeSession = (raw: RawChannel, noise: NoiseTransport, idle: Duration.Input): FileSession => {
  const health: Health = { broken: undefined }
  const { seal, write, send } = makeSending(raw, noise, idle, health)
  const receive = makeReceiving(raw, noise, idle, health)
  return { send, seal, write, control: (c) => send(encodeControl(c)), receive }
}
