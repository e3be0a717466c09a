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
  readonly control: (c: Request | Reply) => Effect.Effect<void, FileError>
  /** The next message, decrypted and split by kind; fails "Network" when none comes within the timeout. */
  readonly receive: Effect.Effect<Message, FileError>
}

/** A session over `raw` with the handshake's transport keys; a silent peer is given up after `idle`. */
export const makeSession = (raw: RawChannel, noise: NoiseTransport, idle: Duration.Input): FileSession => {
  let broken: FileError | undefined
  const fail = (e: FileError) => {
    broken ??= e
    return Effect.fail(e)
  }
  const send = (plaintext: Uint8Array): Effect.Effect<void, FileError> =>
    Effect.suspend(() => {
      if (broken !== undefined) return Effect.fail(broken)
      let ct: Uint8Array
      try {
        ct = noise.encrypt(plaintext)
      } catch (e) {
        return fail(fileError("Protocol", `file session: cannot encrypt: ${explainNoise(e)}`, e))
      }
      const head = new Uint8Array(2)
      head[0] = ct.length >> 8
      head[1] = ct.length & 0xff
      // a reader that stops reading is given up after `idle`, as a silent one is
      return raw.write([head, ct]).pipe(
        Effect.catch((e) => fail(fromTransport(e))),
        Effect.timeoutOrElse({ duration: idle, orElse: () => fail(fileError("Network", "file session: the peer stopped reading")) })
      )
    })

  const read = (n: number) => raw.read(n).pipe(Effect.catch((e) => fail(fromTransport(e))))
  const next = Effect.gen(function*() {
    const head = yield* read(2)
    const n = (head[0]! << 8) | head[1]!
    if (n < 16 || n > MAX_MESSAGE_BYTES) return yield* fail(fileError("Protocol", `file session: a message of ${n} bytes`))
    const ct = yield* read(n)
    let plain: Uint8Array
    try {
      plain = noise.decrypt(ct)
    } catch (e) {
      return yield* fail(fileError("Protocol", "file session: a message failed to decrypt (altered in transit)", e))
    }
    const m = decodeMessage(plain)
    if (Result.isFailure(m)) return yield* fail(fileError("Protocol", `file session: ${m.failure}`))
    return m.success
  })

  const receive = Effect.suspend(() => broken !== undefined ? Effect.fail(broken) : next).pipe(
    Effect.timeoutOrElse({
      duration: idle,
      orElse: () => fail(fileError("Network", `file session: nothing came for ${Duration.format(Duration.fromInputUnsafe(idle))}`))
    })
  )
  return { send, control: (c) => send(encodeControl(c)), receive }
}
