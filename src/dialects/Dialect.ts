/**
 * What every dialect gives the chat roles, whatever its frames (protocol: the chat
 * connection and the secure session). A dialect module holds both roles side by side:
 *
 *   initiator  an OutgoingSession on a connection it dialed: `send` writes one message (for a
 *              classic peer, maybe several paced frames), `replies` reads the peer's next ack
 *              (key answers are handled inside the dialect), with the peer's refusal in a
 *              secure session;
 *   responder  an IncomingSession on a connection it accepted: `receive` gives the next
 *              message as an inner object of the message-type union, `ack` answers it.
 *
 * Dialects: noise (noise/), plain p2pchat (plain.ts), classic plain (classicPlain.ts) and
 * classic 3DES (classic3des.ts); legacy.ts serves the classic and plain ones on one
 * accepted connection, as the classic program mixes them.
 */
import type * as Effect from "effect/Effect"
import type { AckRefusal, Inner } from "../domain/Frames.ts"
import type { GroupState } from "../domain/Group.ts"
import type { Mode } from "../domain/Mode.ts"
import type { FileOffer } from "../domain/Transfer.ts"
import type { SessionError } from "./noise/channel.ts"

/** A message to send: its id and text, and when it was first stored (a retry keeps it). */
export interface OutgoingMessage {
  readonly id: string
  readonly text: string
  readonly sentAt: string
  /** Beyond the peer, the conversation it was sent to (`*all*`): said in a secure session only. */
  readonly to?: string | undefined
  /** A group message's signed member list, and whether the sender left: secure sessions only. */
  readonly group?: { readonly state: GroupState; readonly left: boolean } | undefined
  /** A file offer (protocol.md 9.1): secure sessions only. */
  readonly file?: FileOffer | undefined
}

export interface OutgoingSession {
  readonly mode: Mode
  /** Whether the peer acks each message by id (every p2pchat dialect; no classic peer). */
  readonly acked: boolean
  readonly send: (message: OutgoingMessage) => Effect.Effect<void, SessionError>
  /** The next ack of the peer; fails once the connection is over. */
  readonly replies: Effect.Effect<Reply, SessionError>
  /** A secure session: who the handshake proved. */
  readonly proven?: { readonly username: string; readonly key: Uint8Array; readonly fingerprint: string } | undefined
}

/**
 * An ack as the initiator reads it: the id of the message the peer acknowledged, and, in a
 * secure session only, why the peer refused it (it acked it without storing or showing it:
 * a final answer, protocol.md 5.3). Any other code than ACK_REFUSALS' is kept as it came.
 */
export interface Reply {
  readonly id: string
  readonly refused?: string | undefined
}

/** A message as a responder receives it. */
export interface Received {
  readonly inner: Inner
  readonly mode: Mode
  /** The name a plain frame claims (`from`); a secure session's sender is `proven`. */
  readonly claimedFrom?: string | undefined
  /** Whether the sender reads an ack (p2pchat senders give ids; classic ones do not). */
  readonly wantsAck: boolean
}

export interface IncomingSession {
  readonly receive: Effect.Effect<Received, SessionError>
  /**
   * Acks message `id`: stored; or, with `refused` (said in a secure session only: plain and
   * classic acks carry no reason), decided without storing it.
   */
  readonly ack: (id: string, refused?: AckRefusal) => Effect.Effect<void, SessionError>
  readonly proven?: { readonly username: string; readonly key: Uint8Array; readonly fingerprint: string } | undefined
}
