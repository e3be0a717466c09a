/**
 * The transport seam: how the chat roles reach each other. A connection is a FrameChannel
 * (frames in, frames out, the remote address); the roles never see bytes or sockets.
 *
 * Two layers serve the tag: NodeTransport (TCP on @effect/platform-node, what the node runs)
 * and MemoryTransport (byte pipes in memory, for unit tests of the roles and dialects). Both
 * turn bytes into frames with `channelOf` (Channel.ts), so framing limits hold on either.
 */
import * as Context from "effect/Context"
import * as Data from "effect/Data"
import type * as Effect from "effect/Effect"
import type * as Scope from "effect/Scope"
import type { Frame } from "../domain/Frames.ts"

/**
 * Why a connection ended, or could not open. The first six come from the byte stream; the
 * last three from dialing.
 */
export type TransportErrorReason =
  | "Closed" // the peer hung up between frames
  | "ClosedMidFrame" // the peer hung up inside a frame
  | "NotJson" // framing: bytes that are not a JSON object, not UTF-8, nested too deeply
  | "FrameTooLarge" // framing: more than the frame limit
  | "BadFrame" // a JSON object that fails its frame schema, or no known frame
  | "Io" // reset, write failure, closed by us
  | "Refused" // dialing: nothing listens there, or the host cannot be reached
  | "DialTimeout" // dialing: no answer in time
  | "Listen" // serving: the port cannot be bound

export class TransportError extends Data.TaggedError("TransportError")<{
  readonly reason: TransportErrorReason
  readonly message: string
  readonly cause?: unknown
}> {}

/** Reasons that mean the peer sent something wrong (counted and logged as warnings). */
export const isBadInput = (reason: TransportErrorReason): boolean =>
  reason === "ClosedMidFrame" || reason === "NotJson" || reason === "FrameTooLarge" || reason === "BadFrame"

export interface FrameChannel {
  /** The peer's IPv4 address (IPv4-mapped IPv6 is unwrapped). */
  readonly address: string
  readonly port: number
  /** "address:port", for log lines. */
  readonly label: string
  /** The next frame, in stream order. Fails once the connection is over. */
  readonly next: Effect.Effect<Frame, TransportError>
  /** Writes one frame, compact and followed by a newline, in a single write. */
  readonly send: (frame: object) => Effect.Effect<void, TransportError>
  /**
   * Takes the connection over as a stream of bytes (a file session after its handshake,
   * protocol.md 9): from then on `next` and `send` are not used. Fails with "BadFrame" when
   * the peer already sent bytes past the last frame read (anything but the newline that
   * ends it), and when taken twice.
   */
  readonly raw: Effect.Effect<RawChannel, TransportError>
}

/** A connection as a byte stream (FrameChannel.raw). */
export interface RawChannel {
  /**
   * Exactly `n` bytes (1 or more), in stream order. Fails "Closed" at a clean end of stream
   * before the first of them, "ClosedMidFrame" after some of them.
   */
  readonly read: (n: number) => Effect.Effect<Uint8Array, TransportError>
  /**
   * Exactly `n` bytes (1 or more) if they are read already, taken at once; else undefined
   * and nothing is taken (the fast path of a reader that would wait otherwise).
   */
  readonly readBuffered: (n: number) => Uint8Array | undefined
  /**
   * Writes the chunks in order, as one write where it can; waits while the socket's buffer
   * is full (backpressure: what is written but not sent stays bounded). The socket may
   * still hold the chunks after it returns: the caller does not change them.
   */
  readonly write: (chunks: ReadonlyArray<Uint8Array>) => Effect.Effect<void, TransportError>
}

/** A connection the server accepted, before it is read. */
export interface Accepted {
  readonly address: string
  readonly port: number
  readonly label: string
  /** Starts reading: the frames of the connection, for the rest of the enclosing scope. */
  readonly open: (maxFrameBytes: number) => Effect.Effect<FrameChannel, TransportError, Scope.Scope>
  /** Closes it at once (to make room at the connection cap). */
  readonly destroy: Effect.Effect<void>
  /** Closes it in order without reading it (refused at the cap). */
  readonly refuse: Effect.Effect<void>
}

export interface ServeOptions {
  readonly host: string
  readonly port: number
}

export interface DialOptions {
  /**
   * Bytes the connection reads from the socket ahead of its reader (Node's default, 16 KiB,
   * when not given): a file session's puller takes more, so each read brings many messages.
   */
  readonly readAheadBytes?: number
}

export class Transport extends Context.Service<Transport, {
  /** Opens a connection and its frames, for the rest of the enclosing scope. */
  readonly dial: (host: string, port: number, timeoutMs: number, options?: DialOptions) => Effect.Effect<FrameChannel, TransportError, Scope.Scope>
  /**
   * Listens and runs `handle` in a fiber of its own for each connection, until the
   * enclosing scope closes; returns the bound port (the OS's choice for port 0).
   */
  readonly serve: (
    options: ServeOptions,
    handle: (connection: Accepted) => Effect.Effect<void, never, Scope.Scope>
  ) => Effect.Effect<number, TransportError, Scope.Scope>
}>()("p2pchat/Transport") {}
