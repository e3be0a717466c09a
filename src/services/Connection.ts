/**
 * One chat connection seen as a sequence of frames (PROTOCOL.md 2), shared by the Responder
 * and the Initiator: bytes -> JsonSplitter -> decodeFrame on the way in, one compact frame
 * per write on the way out. A session (classic, plain, or Noise through `sessionIO`) is code
 * that reads `next` and calls `write`; it never sees bytes. Every way a connection can end
 * is one tagged value with a reason for the log.
 */
import * as NodeSocket from "@effect/platform-node/NodeSocket"
import * as Data from "effect/Data"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import * as Result from "effect/Result"
import type * as Scope from "effect/Scope"
import { Socket } from "effect/socket"
import { decodeFrame, type Frame } from "../domain/Frames.ts"
import { encodeFrame, JsonSplitter, MAX_FRAME_BYTES } from "../domain/Framing.ts"
import { type FrameIO, SessionError } from "./SecureSession.ts"

/**
 * Why a connection ended. The first five come from the stream itself; the others are
 * decided by a session (a frame that is well-formed but not acceptable where it came).
 */
export type EndReason =
  | "Closed" // the peer hung up between frames
  | "ClosedMidFrame" // the peer hung up inside a frame
  | "NotJson" // framing: bytes that are not a JSON object, not UTF-8, nested too deeply
  | "FrameTooLarge" // framing: more than MAX_FRAME_BYTES
  | "BadFrame" // a JSON object that fails its frame schema, or no known frame
  | "Io" // reset, write failure, closed by us
  | "Unexpected" // a valid frame that makes no sense here (an ack sent to a responder...)
  | "NoKey" // classic encrypted_message before any key exchange
  | "DecryptFailed" // ciphertext that does not decrypt (classic key, or a secure frame altered/replayed/reordered/truncated)
  | "Unsupported" // a dialect this node does not speak, or a secure session it cannot serve
  | "Handshake" // a secure handshake that failed (bad message, wrong proto, timeout)
  | "KeyChanged" // a secure peer whose key differs from the one pinned for its name
  | "Timeout" // a responder limit: no first frame (or handshake) in time, or an idle session

export class ConnectionEnded extends Data.TaggedError("ConnectionEnded")<{
  readonly reason: EndReason
  readonly message: string
}> {}

/**
 * Reasons that mean the peer sent something wrong (logged as warnings and counted). A
 * silent or idle peer (Timeout) sent nothing wrong: the Responder counts those as limits.
 */
export const isBadInput = (reason: EndReason): boolean => reason !== "Closed" && reason !== "Io" && reason !== "Timeout"

export interface FrameChannel {
  /** The peer's IPv4 address (IPv4-mapped IPv6 is unwrapped). */
  readonly address: string
  readonly port: number
  /** "address:port", for log lines. */
  readonly label: string
  /** The next frame, in stream order. Fails once the connection is over. */
  readonly next: Effect.Effect<Frame, ConnectionEnded>
  /** Writes one frame, compact and followed by a newline, in a single write. */
  readonly send: (frame: object) => Effect.Effect<void, ConnectionEnded>
}

const textEncoder = new TextEncoder()

const causeText = (cause: unknown): string =>
  cause instanceof Error ? cause.message : cause === undefined ? "unknown" : String(cause)

const socketProblem = (e: Socket.SocketError): string => {
  const r = e.reason
  switch (r._tag) {
    case "SocketCloseError":
      return r.code === 1000 ? "closed" : `closed abnormally (${r.code})`
    case "SocketOpenError":
      return r.kind === "Timeout" ? "timed out" : causeText(r.cause)
    default:
      return causeText((r as { readonly cause?: unknown }).cause)
  }
}

/** `::ffff:10.0.0.5` (a dual-stack socket's view of an IPv4 peer) is `10.0.0.5`. */
export const normalizeAddress = (address: string | undefined): string =>
  address === undefined ? "unknown" : address.startsWith("::ffff:") ? address.slice(7) : address

/**
 * Bytes handed to the splitter at a time. A read can bring many small frames at once; they
 * are split a slice at a time, as `next` needs them, so the frames waiting to be decoded
 * come from at most one slice and the rest stays as compact bytes.
 */
const SCAN_SLICE_BYTES = 8 * 1024

/**
 * The frames of an open connection. One splitter per connection; frames are decoded one at
 * a time as `next` asks, so a session reads exactly as far as it needs.
 *
 * What one connection can hold of the peer's input: the unfinished frame in the splitter
 * (at most `maxFrameBytes`, 64 KiB by default: one byte more ends the connection with
 * FrameTooLarge), the rest of the last read (bytes), and the frames split from one slice
 * of it. The socket is never in flowing mode: the next read happens only when all of that
 * is used up, and meanwhile Node stops reading at its high-water mark, so the kernel's
 * receive window closes and the peer blocks (TCP backpressure).
 */
export const channelOf = (
  reader: Socket.Reader,
  writer: Socket.Writer,
  remote: { readonly address: string; readonly port: number },
  maxFrameBytes: number = MAX_FRAME_BYTES
): FrameChannel => {
  const label = `${remote.address}:${remote.port}`
  const splitter = new JsonSplitter(Math.min(maxFrameBytes, MAX_FRAME_BYTES))
  let queue: Array<string> = []
  let head = 0
  // Bytes read but not split yet: raw[rawIndex] from rawOffset on, then the rest of raw.
  let raw: Array<Uint8Array> = []
  let rawIndex = 0
  let rawOffset = 0
  // Set when the stream broke after the frames still in `queue`: they are served first.
  let broken: ConnectionEnded | undefined

  const ended = (e: Socket.SocketError): ConnectionEnded => {
    const r = e.reason
    if (r._tag === "SocketCloseError" && r.code === 1000) {
      const pending = splitter.pending()
      return pending > 0
        ? new ConnectionEnded({
          reason: "ClosedMidFrame",
          message: `connection closed mid-frame (${pending} bytes of an unfinished frame)`
        })
        : new ConnectionEnded({ reason: "Closed", message: "connection closed" })
    }
    return new ConnectionEnded({ reason: "Io", message: `connection failed: ${socketProblem(e)}` })
  }

  /** Splits buffered bytes, a slice at a time, until a frame is ready, the stream breaks or the bytes run out. */
  const scan = (): void => {
    while (head >= queue.length && broken === undefined && rawIndex < raw.length) {
      const chunk = raw[rawIndex]!
      const end = Math.min(chunk.length, rawOffset + SCAN_SLICE_BYTES)
      const r = splitter.push(rawOffset === 0 && end === chunk.length ? chunk : chunk.subarray(rawOffset, end))
      if (end === chunk.length) {
        rawIndex++
        rawOffset = 0
      } else {
        rawOffset = end
      }
      for (const f of r.frames) queue.push(f)
      if (r.error !== undefined) {
        broken = r.error._tag === "FrameTooLarge"
          ? new ConnectionEnded({ reason: "FrameTooLarge", message: `frame larger than ${r.error.limit} bytes` })
          : new ConnectionEnded({ reason: "NotJson", message: `not JSON: ${r.error.reason}` })
      }
    }
    if (broken !== undefined || rawIndex >= raw.length) {
      raw = []
      rawIndex = 0
      rawOffset = 0
    }
  }

  const fill: Effect.Effect<void, ConnectionEnded> = Effect.map(
    Effect.mapError(reader.pull, ended),
    (chunks) => {
      raw = chunks.map((chunk) => typeof chunk === "string" ? textEncoder.encode(chunk) : chunk)
      rawIndex = 0
      rawOffset = 0
    }
  )

  const next: Effect.Effect<Frame, ConnectionEnded> = Effect.suspend(() => {
    if (head >= queue.length) scan()
    if (head < queue.length) {
      const text = queue[head++]!
      if (head === queue.length) {
        queue = []
        head = 0
      }
      const frame = decodeFrame(text)
      return Result.isSuccess(frame)
        ? Effect.succeed(frame.success)
        : Effect.fail(new ConnectionEnded({ reason: "BadFrame", message: frame.failure }))
    }
    if (broken !== undefined) return Effect.fail(broken)
    return Effect.flatMap(fill, () => next)
  })

  const send = (frame: object) =>
    writer.write(encodeFrame(frame)).pipe(
      Effect.mapError((e) => new ConnectionEnded({ reason: "Io", message: `write failed: ${socketProblem(e)}` }))
    )

  return { address: remote.address, port: remote.port, label, next, send }
}

/** The frames of a connection the server accepted, for the rest of the enclosing scope. */
export const acceptedChannel = (
  socket: Socket.Socket,
  maxFrameBytes: number = MAX_FRAME_BYTES
): Effect.Effect<FrameChannel, ConnectionEnded, Scope.Scope> =>
  Effect.gen(function*() {
    const net = yield* Effect.serviceOption(NodeSocket.NetSocket)
    const address = normalizeAddress(Option.match(net, { onNone: () => undefined, onSome: (s) => s.remoteAddress }))
    const port = Option.match(net, { onNone: () => 0, onSome: (s) => s.remotePort ?? 0 })
    // Acks and key answers are small and awaited: do not let Nagle hold them back.
    if (Option.isSome(net)) net.value.setNoDelay(true)
    const reader = yield* socket.reader.pipe(
      Effect.mapError((e) => new ConnectionEnded({ reason: "Io", message: `connection lost before it was served: ${socketProblem(e)}` }))
    )
    const writer = yield* socket.writer
    return channelOf(reader, writer, { address, port }, maxFrameBytes)
  })

/**
 * A secure session's view of a connection (SecureSession's FrameIO). A connection that ends
 * under the session becomes a SessionError ("Closed" for a clean hang-up between frames,
 * "Protocol" otherwise); `connectionEnded` gives back the ConnectionEnded behind such an
 * error, so the caller can tell the network's doing from the session's (undefined when the
 * session itself failed: decryption, handshake, trust).
 */
export const sessionIO = (ch: FrameChannel): {
  readonly io: FrameIO
  readonly connectionEnded: (e: SessionError) => ConnectionEnded | undefined
} => {
  const causes = new WeakMap<SessionError, ConnectionEnded>()
  const wrap = (e: ConnectionEnded): SessionError => {
    const s = new SessionError({ reason: e.reason === "Closed" ? "Closed" : "Protocol", message: e.message })
    causes.set(s, e)
    return s
  }
  return {
    io: { write: (frame) => Effect.mapError(ch.send(frame), wrap), read: Effect.mapError(ch.next, wrap) },
    connectionEnded: (e) => causes.get(e)
  }
}

export class DialError extends Data.TaggedError("DialError")<{
  readonly timeout: boolean
  readonly message: string
}> {}

const ERRNO_WORDS: Record<string, string> = {
  ECONNREFUSED: "connection refused: nothing listens on that port",
  EHOSTUNREACH: "host unreachable",
  ENETUNREACH: "network unreachable",
  ETIMEDOUT: "timed out",
  ECONNRESET: "connection reset",
  EADDRNOTAVAIL: "address not available"
}

const dialProblem = (e: Socket.SocketError): string => {
  const r = e.reason
  const cause = "cause" in r ? (r as { readonly cause?: unknown }).cause : undefined
  const code = typeof cause === "object" && cause !== null && "code" in cause ? String(cause.code) : ""
  return ERRNO_WORDS[code] ?? socketProblem(e)
}

/**
 * Opens a TCP connection and its frames, for the rest of the enclosing scope. Each write
 * leaves at once (no Nagle), so a classic peer gets one frame per read.
 */
export const dial = (
  host: string,
  port: number,
  timeoutMs: number
): Effect.Effect<FrameChannel, DialError, Scope.Scope> =>
  Effect.gen(function*() {
    const socket = yield* NodeSocket.makeNet({ host, port, noDelay: true, openTimeout: timeoutMs })
    const reader = yield* socket.reader.pipe(
      Effect.mapError((e) => {
        const timeout = e.reason._tag === "SocketOpenError" && e.reason.kind === "Timeout"
        return new DialError({
          timeout,
          message: timeout
            ? `no answer from ${host}:${port} within ${timeoutMs / 1000} s`
            : `cannot connect to ${host}:${port} (${dialProblem(e)})`
        })
      })
    )
    const writer = yield* socket.writer
    return channelOf(reader, writer, { address: host, port })
  })
