/**
 * The one error of the sending side (Initiator, Outbox, Links): why a message was not
 * delivered now, with the cause under it kept.
 */
import * as Data from "effect/Data"

export type SendErrorReason = "UnknownUser" | "Unreachable" | "Timeout" | "Storage" | "Refused" | "Unsupported" | "KeyChanged"
  /** The peer refused the session: it has pinned another key for this node's name. */
  | "KeyRejected"
  /** The peer acked the message refused (`refused`: its code): final, it is not sent again. */
  | "MessageRefused"

export class SendError extends Data.TaggedError("SendError")<{
  readonly reason: SendErrorReason
  readonly message: string
  readonly cause?: unknown
  /** With MessageRefused: the receiver's code (protocol.md 5.3). */
  readonly refused?: string | undefined
}> {}
